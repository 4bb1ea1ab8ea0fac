"""The per-test deadline of tests/conftest.py: a hanging test ends the run, with tracebacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HANGS = """
import threading, time
import pytest

def test_waits_forever():
    threading.Event().wait()

@pytest.mark.slow
def test_long_soak():
    time.sleep(2)
"""


def run_pytest(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: a long test\n")
    (tmp_path / "test_hangs.py").write_text(HANGS)
    env = {**os.environ, "TYPEDFLOW_TEST_TIMEOUT": "1"}
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - t0


def test_a_hanging_test_ends_the_run_with_the_tracebacks(tmp_path: Path) -> None:
    done, seconds = run_pytest(tmp_path, "-k", "waits_forever")
    assert done.returncode != 0
    assert "ran longer than 1 s" in done.stderr, (done.stdout, done.stderr)
    assert "test_waits_forever" in done.stderr  # where it hung
    assert seconds < 60


def test_the_soak_has_no_deadline(tmp_path: Path) -> None:
    done, _ = run_pytest(tmp_path, "-k", "long_soak")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
