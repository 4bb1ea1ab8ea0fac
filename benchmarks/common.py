"""What every workload shares: the run plan, the message, timing and file-size helpers."""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

MESSAGE_LEN = 100
"""The length of the message each step appends."""


def message(i: int) -> str:
    """The message of step ``i``: exactly ``MESSAGE_LEN`` characters."""
    head = f"message {i:07d}: "
    return (head + "lorem ipsum dolor sit amet " * 4)[:MESSAGE_LEN]


@attrs.frozen(kw_only=True)
class Plan:
    """How big and how often: one plan for the full run, a smaller one for ``--quick``."""

    quick: bool
    """Whether this is the reduced run."""
    sizes: tuple[int, int]
    """The run lengths (steps) of the per-step figures: a short and a long run."""
    repeats: int
    """At most this many repeats of a measurement (the median is reported)."""
    budget: float
    """No more repeats once a measurement has taken this many seconds (one run at least)."""
    concurrent_runs: int
    """How many runs share one checkpointer in the concurrency figures."""
    concurrent_steps: int
    """The length of each of those runs."""
    insert_count: int
    """How many committed single-row inserts one DuckDB measurement makes."""
    batch_steps: int
    """The run length of the batched small-state figure."""
    read_threads: int
    """How many threads the read figures (resume, load, load_at) are taken over."""
    history_steps: tuple[int, int]
    """The thread lengths of the history listing figures."""
    import_repeats: int
    """How many fresh interpreters each import-time figure is the median of."""
    big: bool
    """Whether to build the file of many stored checkpoints (``--big``)."""
    big_threads: int
    """Threads in that file."""
    big_steps: int
    """Steps of each of those threads (each has ``big_steps + 1`` checkpoints)."""
    big_budget: float
    """Skip the big figures when storing the file is projected to take longer (seconds)."""

    @classmethod
    def make(cls, *, quick: bool, big: bool) -> Plan:
        """The plan for the full run, or for ``--quick``."""
        if quick:
            return cls(
                quick=True,
                sizes=(20, 100),
                repeats=2,
                budget=1.0,
                concurrent_runs=64,
                concurrent_steps=2,
                insert_count=50,
                batch_steps=500,
                read_threads=2,
                history_steps=(100, 500),
                import_repeats=2,
                big=big,
                big_threads=100,
                big_steps=99,
                big_budget=20.0,
            )
        return cls(
            quick=False,
            sizes=(200, 1000),
            repeats=5,
            budget=12.0,
            concurrent_runs=64,
            concurrent_steps=30,
            insert_count=300,
            batch_steps=5000,
            read_threads=5,
            history_steps=(1000, 10_000),
            import_repeats=9,
            big=big,
            big_threads=10_000,
            big_steps=99,
            big_budget=180.0,
        )


def median(values: list[float]) -> float:
    """The median of measured values."""
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes, after a garbage collection (the collector stays on)."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def repeated(plan: Plan, measure: Callable[[int], float]) -> float:
    """The median of ``measure(i)`` for i = 0, 1, ...: at least once, at most ``plan.repeats``
    times, and no more once the calls (with their set-up) have taken ``plan.budget`` seconds."""
    values: list[float] = []
    t0 = time.perf_counter()
    for i in range(plan.repeats):
        values.append(measure(i))
        if time.perf_counter() - t0 > plan.budget:
            break
    return median(values)


def file_size(path: Path) -> int:
    """Bytes on disk of a database file and its journal or write-ahead log, if any."""
    total = 0
    for suffix in ("", ".wal", "-wal", "-shm", "-journal"):
        p = path.with_name(path.name + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def run_together(runs: int, work: Callable[[int], None]) -> float:
    """Seconds for ``work(i)`` in ``runs`` Python threads released at one moment."""
    barrier = threading.Barrier(runs + 1)

    def start(i: int) -> None:
        barrier.wait()
        work(i)

    workers = [threading.Thread(target=start, args=(i,)) for i in range(runs)]
    for w in workers:
        w.start()
    gc.collect()
    barrier.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - t0
