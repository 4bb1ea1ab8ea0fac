"""Shared pytest configuration: hypothesis profiles are registered once, here.

Profiles: ``dev`` (the default: quick), ``ci`` (more examples, no deadline;
chosen when the environment variable CI is set) and ``soak`` (many examples;
``HYPOTHESIS_PROFILE=soak``).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# A test that hangs (a deadlock between the checkpointer's threads, a lost wake-up) would hold
# the whole run until CI's own limit. Each test gets a deadline instead: past it, the
# tracebacks of every thread are printed and the run exits with an error. The long soak
# (marked ``slow``) has none; TYPEDFLOW_TEST_TIMEOUT sets the seconds (0: no deadline).
_TIMEOUT = float(os.environ.get("TYPEDFLOW_TEST_TIMEOUT", "300"))


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    if _TIMEOUT <= 0 or request.node.get_closest_marker("slow") is not None:
        yield
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    test = request.node.nodeid

    def expire() -> None:
        # Output is captured while a test runs: printed past the capture, or it would be lost.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            sys.stderr.write(
                f"\n{test} ran longer than {_TIMEOUT:g} s (TYPEDFLOW_TEST_TIMEOUT); "
                "where each thread is:\n"
            )
            sys.stderr.flush()
            faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    timer = threading.Timer(_TIMEOUT, expire)
    timer.name = "test deadline"
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
