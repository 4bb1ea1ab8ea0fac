"""A long deterministic workflow, and a script that runs it on a DuckDB file to be killed.

The crash tests (``tests/test_crash.py``) run this module in a child process and
kill it with SIGKILL at random moments; the concurrency tests run the same
workflow in many threads of one process. The workflow is deterministic: its
states depend only on the input, never on timing, so every run of a thread can
be compared step by step with one uninterrupted reference run.

Usage::

    python -m tests.crash_child FILE THREAD DURABILITY SEED PAUSE GOAL [BATCH_SIZE [hold]]

It resumes ``THREAD`` when ``FILE`` holds it, and starts it otherwise. Nodes
sleep up to ``PAUSE`` seconds (chosen at random from ``SEED``), so that a kill
at a random moment often lands inside a node. The script reports its progress
on stdout, one line per event (``<event> <step> <time.monotonic()>``), written
straight to the file descriptor so that a line the parent reads was really
written before the kill:

- ``ready``: the file is open;
- ``saving <step>``: a checkpoint is handed to the checkpointer;
- ``committing <step>``: a commit of every checkpoint up to this step begins
  (each save with ``"step"`` durability; with ``"batch"``, the save that fills
  the buffer, or a ``flush()``);
- ``saved <step>``: ``save`` returned;
- ``committed <step>``: that commit is done;
- ``holding <step>``: with ``hold``, the run finished and the script keeps the
  file open until it reads a line on stdin;
- ``done <step>``: the run finished and the file is closed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import sys
import time

import attrs

from typedflow import (
    END,
    Checkpoint,
    Checkpointer,
    Completed,
    InMemoryCheckpointer,
    Runner,
    StateSchema,
    ThreadNotFoundError,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer, Durability

MODULUS = 1_000_003
"""The arithmetic of the state is modulo this prime, so numbers stay small."""

FLUSH_EVERY = 37
"""With ``"batch"`` durability the script also calls ``flush()`` every this many saves."""


@attrs.frozen
class Tick:
    """The update type of :class:`Soak`: one node's contribution to a step."""

    node: str
    """The node that returned it."""
    add: int
    """Added to ``acc`` after the multiplication."""
    mul: int = 1
    """Multiplies ``acc``; makes the result depend on the order updates are applied in."""


@attrs.frozen
class Soak(StateSchema[Tick]):
    """A state that grows a log and does order-dependent arithmetic, step after step."""

    tag: str = ""
    """Names the run; every log entry carries it, so rows of another thread stand out."""
    goal: int = 300
    """The run ends once ``n`` reaches this."""
    n: int = 0
    """How many updates were applied."""
    acc: int = 1
    """``acc * mul + add`` for every update, modulo :data:`MODULUS`."""
    log: tuple[str, ...] = ()
    """One entry per update: tag, node and ``n`` before it."""

    def apply(self, update: Tick) -> Soak:
        return attrs.evolve(
            self,
            n=self.n + 1,
            acc=(self.acc * update.mul + update.add) % MODULUS,
            log=(*self.log, f"{self.tag}/{update.node}@{self.n}"),
        )


_rng = random.Random(0)
_pause = 0.0


def _nap() -> float:
    """A random tiny pause (none unless the script set one): kills land inside nodes."""
    return _rng.uniform(0.0, _pause) if _pause else 0.0


@Soak.node
def work(state: Soak) -> Tick:
    """A sync node on its own in a step."""
    time.sleep(_nap())
    return Tick("work", add=state.n * 7 + 3, mul=3)


@Soak.node
async def left(state: Soak) -> list[Tick]:
    """An async node that runs in parallel with :func:`right` and returns two updates."""
    await asyncio.sleep(_nap())
    return [Tick("left", add=state.n, mul=2), Tick("left", add=1)]


@Soak.node
async def right(state: Soak) -> Tick:
    """The other half of the parallel step."""
    await asyncio.sleep(_nap())
    return Tick("right", add=state.acc % 97, mul=5)


@Soak.node
def join(state: Soak) -> Tick:
    """Runs once after both branches (it is queued twice in one step)."""
    time.sleep(_nap())
    return Tick("join", add=len(state.log))


def route(state: Soak) -> str | list[str]:
    """Every sixth step or so fans out to two parallel nodes; the run ends at the goal."""
    if state.n >= state.goal:
        return END
    return ["left", "right"] if state.n % 6 == 5 else "work"


def soak_runner(checkpointer: Checkpointer[Soak] | None) -> Runner[Soak]:
    """The workflow's runner (any number of steps in one call)."""
    return Runner(
        Soak,
        nodes=[work, left, right, join],
        entry="work",
        edges={"left": "join", "right": "join"},
        routes={"work": route, "join": route},
        checkpointer=checkpointer,
        step_limit=100_000,
    )


@functools.cache
def reference(tag: str, goal: int) -> tuple[Checkpoint[Soak], ...]:
    """The checkpoints of an uninterrupted run of thread ``tag`` (in memory), by step."""
    cp = InMemoryCheckpointer(Soak)
    result = soak_runner(cp).invoke(Soak(tag=tag, goal=goal), thread_id=tag)
    if not isinstance(result, Completed):
        raise RuntimeError(f"the reference run of {tag!r} did not complete: {result!r}")
    return tuple(reversed(cp.history(tag)))


def signature(cp: Checkpoint[Soak]) -> tuple[object, ...]:
    """What a step must reproduce exactly (timings and creation times differ from run to run)."""
    writes = tuple((w.node, w.updates, w.goto) for w in cp.writes)
    return (cp.step, cp.state, cp.next, cp.status, writes, cp.pending, cp.failures, cp.reason)


def _report(event: str, step: int) -> None:
    # The monotonic clock is the machine's, so the parent can time its kill from this moment.
    os.write(1, f"{event} {step} {time.monotonic():.6f}\n".encode())


class ReportingCheckpointer(DuckDBCheckpointer[Soak]):
    """A DuckDB checkpointer that reports each save (and what is committed) on stdout."""

    def __init__(self, path: str, durability: Durability, batch_size: int) -> None:
        super().__init__(Soak, path, durability=durability, batch_size=batch_size)
        self._batched = durability == "batch"
        self._size = batch_size
        self._buffered = 0
        self._saves = 0
        self._last = -1

    def save(self, checkpoint: Checkpoint[Soak]) -> None:
        _report("saving", checkpoint.step)
        # As documented: with "batch", the save that fills the buffer commits it.
        commits = not self._batched or self._buffered + 1 == self._size
        if commits:
            _report("committing", checkpoint.step)
        super().save(checkpoint)
        self._last = checkpoint.step
        self._saves += 1
        self._buffered = 0 if commits else self._buffered + 1
        _report("saved", checkpoint.step)
        if commits:
            _report("committed", checkpoint.step)
        elif self._saves % FLUSH_EVERY == 0:
            self.flush()

    def flush(self) -> None:
        if self._last >= 0:
            _report("committing", self._last)
        super().flush()
        self._buffered = 0
        if self._last >= 0:
            _report("committed", self._last)


def main(argv: list[str]) -> int:
    """Run (or resume) one thread of the workflow on a DuckDB file; see the module docstring."""
    global _pause
    path, thread, durability, seed, pause, goal = argv[:6]
    batch_size = int(argv[6]) if len(argv) > 6 else 16
    hold = argv[7:] == ["hold"]
    if durability not in ("step", "batch"):
        raise SystemExit(f"durability must be 'step' or 'batch', got {durability!r}")
    _rng.seed(int(seed))
    _pause = float(pause)
    mode: Durability = "step" if durability == "step" else "batch"
    cp = ReportingCheckpointer(path, mode, batch_size)
    _report("ready", -1)
    runner = soak_runner(cp)
    try:
        cp.load(thread)
    except ThreadNotFoundError:
        result = runner.invoke(Soak(tag=thread, goal=int(goal)), thread_id=thread)
    else:
        result = runner.resume(thread)
    if hold:
        _report("holding", result.checkpoint.step)
        sys.stdin.readline()
    cp.close()
    _report("done", result.checkpoint.step)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
