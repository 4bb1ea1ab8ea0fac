"""Shared pytest configuration: hypothesis profiles are registered once, here.

Profiles: ``dev`` (the default: quick), ``ci`` (more examples, no deadline;
chosen when the environment variable CI is set) and ``soak`` (many examples;
``HYPOTHESIS_PROFILE=soak``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
