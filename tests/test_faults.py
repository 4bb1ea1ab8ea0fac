"""Faults on every backend: a node, a save, the reducer, a cancel or a timeout fails mid-run.

Each test checks the same three things on the in-memory and the DuckDB
backends (a DuckDB file is closed and reopened between the fault and the
resume, as after a crash): the error says what failed and where, the stored
history is exactly the steps that completed, and resuming once the fault is
gone reaches the state of a run that never failed, re-running only the work
that was lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypeAlias

import attrs
import pytest

from typedflow import (
    END,
    Checkpoint,
    CheckpointError,
    Completed,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    Node,
    NodeError,
    NodeTimeoutError,
    ReducerError,
    Runner,
    StateSchema,
    ThreadInfo,
    ThreadNotFoundError,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


@attrs.frozen
class Note:
    """An update: one line for the journal."""

    text: str
    """The line to append."""


REFUSED: set[str] = set()
"""Lines the reducer refuses to apply (a reducer bug that a test switches on and off)."""


@attrs.frozen
class Journal(StateSchema[Note]):
    """Every applied line, in the order the reducer applied them (stored as deltas in DuckDB)."""

    lines: tuple[str, ...] = ()
    """The applied lines, oldest first."""

    def apply(self, update: Note) -> Journal:
        if update.text in REFUSED:
            raise ValueError(f"cannot apply {update.text!r}")
        return Journal(lines=(*self.lines, update.text))


@pytest.fixture(autouse=True)
def _reducer_fixed() -> Iterator[None]:
    yield
    REFUSED.clear()


Kind: TypeAlias = Literal["memory", "duckdb", "duckdb-batch"]


class Backend:
    """Opens one store of a kind; ``reopen`` closes it and opens it again, as after a crash."""

    def __init__(self, kind: Kind, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.opened: list[HistoryCheckpointer[Journal]] = []
        self._memory = InMemoryCheckpointer(Journal)

    def open(self) -> HistoryCheckpointer[Journal]:
        cp: HistoryCheckpointer[Journal]
        if self.kind == "memory":
            cp = self._memory
        elif self.kind == "duckdb":
            cp = DuckDBCheckpointer(Journal, self.path)
        else:
            cp = DuckDBCheckpointer(Journal, self.path, durability="batch", batch_size=2)
        self.opened.append(cp)
        return cp

    def reopen(self, cp: HistoryCheckpointer[Journal]) -> HistoryCheckpointer[Journal]:
        cp.close()
        return self.open()


@pytest.fixture(params=["memory", "duckdb", "duckdb-batch"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path / "faults.duckdb")
    yield b
    for cp in b.opened:
        cp.close()


# ----- the graph ---------------------------------------------------------------------------


@attrs.define
class Faults:
    """What the nodes of :func:`graph` do wrong, switched on and off by a test."""

    raise_in: str | None = None
    """The node that raises (once per call while set)."""
    error: type[BaseException] = ValueError
    """What it raises."""
    hang_in: str | None = None
    """The (async) node that waits forever while set."""
    started: asyncio.Event | None = None
    """Set when the hanging node has started."""


def graph(
    cp: HistoryCheckpointer[Journal] | None,
    calls: list[str],
    faults: Faults,
    *,
    asynchronous: bool,
    node_timeout: float | None = None,
) -> Runner[Journal]:
    """start -> [a, b, c] -> join, twice round: seven checkpoints (steps 0..6).

    Every node appends ``name@<lines seen>``, so a node that ran against the
    wrong snapshot, twice, or out of order changes the final state.
    """

    def make(name: str) -> Node[Journal]:
        if asynchronous:

            @Journal.node(name=name)
            async def anode(state: Journal) -> Note:
                calls.append(name)
                await asyncio.sleep(0)
                if faults.hang_in == name:
                    if faults.started is not None:
                        faults.started.set()
                    await asyncio.sleep(3600)
                if faults.raise_in == name:
                    raise faults.error(f"{name} broke")
                return Note(f"{name}@{len(state.lines)}")

            return anode

        @Journal.node(name=name)
        def node(state: Journal) -> Note:
            calls.append(name)
            if faults.raise_in == name:
                raise faults.error(f"{name} broke")
            return Note(f"{name}@{len(state.lines)}")

        return node

    return Runner(
        Journal,
        nodes=[make(n) for n in ("start", "a", "b", "c", "join")],
        entry="start",
        edges={"start": ["a", "b", "c"], "a": "join", "b": "join", "c": "join"},
        routes={"join": lambda s: END if len(s.lines) >= 10 else "start"},
        checkpointer=cp,
        node_timeout=node_timeout,
    )


def reference() -> tuple[Journal, list[Checkpoint[Journal]], list[str]]:
    """The final state, history (oldest first) and node calls of a run that never fails."""
    cp = InMemoryCheckpointer(Journal)
    calls: list[str] = []
    result = graph(cp, calls, Faults(), asynchronous=False).invoke(Journal(), thread_id="ref")
    assert isinstance(result, Completed)
    return result.state, list(reversed(cp.history("ref"))), calls


REF_STATE, REF_HISTORY, REF_CALLS = reference()


def test_the_reference_run() -> None:
    # The fixtures below rely on this shape: a parallel step at steps 2 and 5.
    assert [c.step for c in REF_HISTORY] == list(range(7))
    assert [[w.node for w in c.writes] for c in REF_HISTORY][1:4] == [
        ["start"],
        ["a", "b", "c"],
        ["join"],
    ]
    assert REF_STATE.lines[:5] == ("start@0", "a@1", "b@1", "c@1", "join@4")
    assert len(REF_CALLS) == 10


Shape: TypeAlias = tuple[
    int, Journal, tuple[str, ...], str, tuple[tuple[str, tuple[Note, ...]], ...]
]


def shape(c: Checkpoint[Journal]) -> Shape:
    """What must match between a resumed run and the reference (not timings or clocks)."""
    return (c.step, c.state, c.next, c.status, tuple((w.node, w.updates) for w in c.writes))


def ok_history(cp: HistoryCheckpointer[Journal], thread_id: str) -> list[Shape]:
    """The thread's completed ("ok") steps, oldest first."""
    return [shape(c) for c in reversed(cp.history(thread_id)) if c.status == "ok"]


def run(runner: Runner[Journal], thread_id: str, *, asynchronous: bool) -> None:
    if asynchronous:
        asyncio.run(runner.ainvoke(Journal(), thread_id=thread_id))
    else:
        runner.invoke(Journal(), thread_id=thread_id)


def resume(runner: Runner[Journal], thread_id: str, *, asynchronous: bool) -> Journal:
    result = asyncio.run(runner.aresume(thread_id)) if asynchronous else runner.resume(thread_id)
    assert isinstance(result, Completed)
    return result.state


# ----- a node that raises in a parallel step -----------------------------------------------


@pytest.mark.parametrize(
    ("asynchronous", "error"),
    [
        pytest.param(False, ValueError, id="sync"),
        pytest.param(True, ValueError, id="async"),
        pytest.param(True, asyncio.CancelledError, id="async-raises-cancelled"),
    ],
)
def test_a_node_raising_in_a_parallel_step_keeps_the_others_work(
    backend: Backend, asynchronous: bool, error: type[BaseException]
) -> None:
    cp = backend.open()
    calls: list[str] = []
    faults = Faults(raise_in="b", error=error)
    with pytest.raises(NodeError) as info:
        run(graph(cp, calls, faults, asynchronous=asynchronous), "t", asynchronous=asynchronous)
    assert (info.value.thread_id, info.value.step, info.value.node) == ("t", 2, "b")
    assert "'b'" in str(info.value)
    assert "step 2" in str(info.value)
    assert "'t'" in str(info.value)
    assert type(info.value.__cause__) is error
    assert calls == ["start", "a", "b", "c"]

    cp = backend.reopen(cp)
    # Steps 0 and 1 are intact; step 2 is an error checkpoint holding a's and c's writes.
    assert ok_history(cp, "t") == [shape(c) for c in REF_HISTORY[:2]]
    failed = cp.load("t")
    assert (failed.step, failed.status, failed.next) == (2, "error", ("a", "b", "c"))
    assert failed.state == REF_HISTORY[1].state
    assert [(w.node, w.updates) for w in failed.pending] == [
        ("a", (Note("a@1"),)),
        ("c", (Note("c@1"),)),
    ]
    assert [(f.node, f.message) for f in failed.failures] == [("b", "b broke")]
    assert failed.failures[0].error_type == f"{error.__module__}.{error.__qualname__}"

    faults.raise_in = None
    calls.clear()
    runner = graph(cp, calls, faults, asynchronous=asynchronous)
    assert resume(runner, "t", asynchronous=asynchronous) == REF_STATE
    # Only b of the failed step runs again; a and c's kept writes are reused.
    assert calls == ["b", "join", *REF_CALLS[5:]]
    # The error step took step 2; the completed steps after it are the reference's, one later.
    expected = [shape(c) for c in REF_HISTORY[:2]] + [
        (s + 1, *rest) for s, *rest in (shape(c) for c in REF_HISTORY[2:])
    ]
    assert ok_history(cp, "t") == expected


# ----- a save that fails -------------------------------------------------------------------


class SaveFault(CheckpointError):
    """The fault injected into a save."""


class FailingSaves(HistoryCheckpointer[Journal]):
    """A real checkpointer whose ``fail_at``-th save (0-based) raises before storing anything."""

    def __init__(self, inner: HistoryCheckpointer[Journal], fail_at: int) -> None:
        self.inner = inner
        self.fail_at: int | None = fail_at
        self.saves = 0
        self.raised: SaveFault | None = None

    @property
    def schema(self) -> type[Journal]:
        return self.inner.schema

    def _count(self, checkpoint: Checkpoint[Journal]) -> None:
        n = self.saves
        self.saves += 1
        if n == self.fail_at:
            self.raised = SaveFault(
                f"no space left on device while saving step {checkpoint.step} "
                f"of thread {checkpoint.thread_id!r}"
            )
            raise self.raised

    def save(self, checkpoint: Checkpoint[Journal]) -> None:
        self._count(checkpoint)
        self.inner.save(checkpoint)

    async def asave(self, checkpoint: Checkpoint[Journal]) -> None:
        self._count(checkpoint)
        await self.inner.asave(checkpoint)

    def load(self, thread_id: str) -> Checkpoint[Journal]:
        return self.inner.load(thread_id)

    def threads(self) -> list[ThreadInfo]:
        return self.inner.threads()

    def history(
        self, thread_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Checkpoint[Journal]]:
        return self.inner.history(thread_id, limit=limit, before=before)

    def load_at(self, thread_id: str, step: int) -> Checkpoint[Journal]:
        return self.inner.load_at(thread_id, step)

    def delete(self, thread_id: str) -> None:
        self.inner.delete(thread_id)

    def prune(self, thread_id: str, *, keep: int) -> int:
        return self.inner.prune(thread_id, keep=keep)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_failing_save_stops_the_run_and_stores_exactly_the_steps_before_it(
    backend: Backend, asynchronous: bool
) -> None:
    cp = backend.open()
    for k in range(len(REF_HISTORY)):
        tid = f"save-fails-at-{k}"
        calls: list[str] = []
        faulty = FailingSaves(cp, fail_at=k)
        with pytest.raises(SaveFault) as info:
            run(
                graph(faulty, calls, Faults(), asynchronous=asynchronous),
                tid,
                asynchronous=asynchronous,
            )
        # The checkpointer's own error reaches the caller unchanged.
        assert info.value is faulty.raised
        assert f"step {k} of thread {tid!r}" in str(info.value)
        # The nodes of step k ran; the runner stopped before running anything more.
        ran = [w.node for c in REF_HISTORY[: k + 1] for w in c.writes]
        assert calls == ran

        cp = backend.reopen(cp)
        if k == 0:
            with pytest.raises(ThreadNotFoundError):
                cp.load(tid)
            assert tid not in {t.thread_id for t in cp.threads()}
            continue
        assert [shape(c) for c in reversed(cp.history(tid))] == [shape(c) for c in REF_HISTORY[:k]]

        # The fault is gone: resuming recomputes step k only, and ends where the reference did.
        calls.clear()
        runner = graph(cp, calls, Faults(), asynchronous=asynchronous)
        assert resume(runner, tid, asynchronous=asynchronous) == REF_STATE
        assert calls == [w.node for c in REF_HISTORY[k:] for w in c.writes]
        assert [shape(c) for c in reversed(cp.history(tid))] == [shape(c) for c in REF_HISTORY]


def test_a_save_failing_at_step_zero_leaves_the_thread_id_free(backend: Backend) -> None:
    cp = backend.open()
    calls: list[str] = []
    with pytest.raises(SaveFault):
        graph(FailingSaves(cp, fail_at=0), calls, Faults(), asynchronous=False).invoke(
            Journal(), thread_id="t"
        )
    assert calls == []
    result = graph(cp, calls, Faults(), asynchronous=False).invoke(Journal(), thread_id="t")
    assert result.state == REF_STATE
    assert [shape(c) for c in reversed(cp.history("t"))] == [shape(c) for c in REF_HISTORY]


# ----- a reducer that raises ---------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_reducer_that_raises_then_is_fixed(backend: Backend, asynchronous: bool) -> None:
    cp = backend.open()
    calls: list[str] = []
    REFUSED.add("c@6")  # c's line of the second round, at step 5
    with pytest.raises(ReducerError) as info:
        run(graph(cp, calls, Faults(), asynchronous=asynchronous), "t", asynchronous=asynchronous)
    error = info.value
    assert (error.thread_id, error.step, error.node) == ("t", 5, "c")
    assert "thread 't', step 5" in str(error)
    assert "'c@6'" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert calls == REF_CALLS[:9]

    cp = backend.reopen(cp)
    assert ok_history(cp, "t") == [shape(c) for c in REF_HISTORY[:5]]
    failed = cp.load("t")
    assert (failed.step, failed.status, failed.state) == (5, "error", REF_HISTORY[4].state)
    # Nothing of the step is applied and every write is kept, including the refused one.
    assert [(w.node, w.updates) for w in failed.pending] == [
        (w.node, w.updates) for w in REF_HISTORY[5].writes
    ]
    assert [(f.node, f.error_type) for f in failed.failures] == [
        ("c", "typedflow.errors.ReducerError")
    ]

    REFUSED.clear()
    calls.clear()
    runner = graph(cp, calls, Faults(), asynchronous=asynchronous)
    assert resume(runner, "t", asynchronous=asynchronous) == REF_STATE
    # The kept writes are applied; no node of the failed step runs again.
    assert calls == ["join"]


# ----- cancellation from outside -----------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "caller-timeout"])
def test_cancelling_a_run_from_outside_keeps_a_resumable_history(
    backend: Backend, how: str
) -> None:
    cp = backend.open()
    calls: list[str] = []
    faults = Faults(hang_in="b")
    runner = graph(cp, calls, faults, asynchronous=True)

    async def main() -> None:
        faults.started = asyncio.Event()
        task = asyncio.create_task(runner.ainvoke(Journal(), thread_id="t"))
        if how == "cancel":
            await faults.started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
        else:
            # A caller's own deadline cancels the run too, and surfaces as its TimeoutError.
            with pytest.raises(TimeoutError) as info:
                async with asyncio.timeout(0.1):
                    await task
            assert not isinstance(info.value, NodeTimeoutError)

    asyncio.run(main())
    assert sorted(calls) == ["a", "b", "c", "start"]

    cp = backend.reopen(cp)
    # The cancelled step left no trace; the steps before it are stored whole.
    assert [shape(c) for c in reversed(cp.history("t"))] == [shape(c) for c in REF_HISTORY[:2]]

    faults.hang_in = None
    calls.clear()
    runner = graph(cp, calls, faults, asynchronous=True)
    assert resume(runner, "t", asynchronous=True) == REF_STATE
    assert calls == REF_CALLS[1:]
    assert [shape(c) for c in reversed(cp.history("t"))] == [shape(c) for c in REF_HISTORY]


# ----- a node past the timeout -------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["invoke", "ainvoke"])
def test_an_async_node_past_the_timeout_fails_alone(backend: Backend, asynchronous: bool) -> None:
    cp = backend.open()
    calls: list[str] = []
    faults = Faults(hang_in="c")
    runner = graph(cp, calls, faults, asynchronous=True, node_timeout=0.05)
    with pytest.raises(NodeTimeoutError) as info:
        run(runner, "t", asynchronous=asynchronous)
    error = info.value
    assert isinstance(error, NodeError)
    assert isinstance(error, TimeoutError)
    assert (error.thread_id, error.step, error.node) == ("t", 2, "c")
    assert "node 'c' ran longer than node_timeout=0.05s (thread 't', step 2)" in str(error)

    cp = backend.reopen(cp)
    failed = cp.load("t")
    assert (failed.step, failed.status, failed.state) == (2, "error", REF_HISTORY[1].state)
    assert [w.node for w in failed.pending] == ["a", "b"]
    assert [f.node for f in failed.failures] == ["c"]
    assert failed.failures[0].error_type == "typedflow.errors.NodeTimeoutError"

    faults.hang_in = None
    calls.clear()
    runner = graph(cp, calls, faults, asynchronous=True, node_timeout=0.05)
    assert resume(runner, "t", asynchronous=asynchronous) == REF_STATE
    assert calls == ["c", "join", *REF_CALLS[5:]]


def test_a_sync_node_is_never_timed_out() -> None:
    # Documented: a thread cannot be stopped, so node_timeout applies to async nodes only.
    @Journal.node
    def slow(state: Journal) -> Note:
        import time

        time.sleep(0.05)
        return Note("slow")

    runner = Runner(Journal, nodes=[slow], entry="slow", node_timeout=0.01)
    assert runner.invoke(Journal()).state == Journal(lines=("slow",))
