"""Pausing the cyclic garbage collector while a read builds many objects at once."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]

_lock = threading.Lock()
_inside = 0
"""How many threads are inside :func:`collector_paused` now."""
_restore = False
"""Whether the collector was enabled when the first of them entered."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector from running inside the block.

    The collector runs whenever enough container objects have been made since it last ran,
    and each run of an older generation walks every object that has lived long. A read
    that makes tens of thousands of objects (the checkpoints of a long history, their
    states and writes) sets it off again and again, and in a process holding a few hundred
    thousand objects the collections it makes then cost a third of the read, however few of
    the objects are garbage. It runs again
    after the block, as it would have.

    Reentrant and safe across threads: the collector is enabled again when the last thread
    leaves the block, and only if it was enabled when the first one entered (an
    application that turned it off keeps it off).
    """
    global _inside, _restore
    with _lock:
        if _inside == 0:
            _restore = gc.isenabled()
            gc.disable()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _restore:
                gc.enable()
