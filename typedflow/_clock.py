"""Seams for time and ids: small module-level functions that tests may replace."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

__all__ = ["new_thread_id", "now", "perf_counter"]


def now() -> datetime:
    """The current time, timezone-aware UTC: the ``created_at`` of checkpoints and threads."""
    return datetime.now(UTC)


def new_thread_id() -> str:
    """A fresh thread id, used when ``invoke`` is not given one."""
    return uuid.uuid4().hex


perf_counter = time.perf_counter
"""The monotonic clock that node and step durations are measured with."""
