"""A long read pauses the cyclic garbage collector while it builds its checkpoints, and
leaves the collector as it found it: enabled again after the read (even one that fails),
disabled still if the application had disabled it, across threads."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

import attrs
import pytest

from typedflow import Checkpoint, NodeWrite, StateSchema
from typedflow._gc import collector_paused
from typedflow.checkpoint import duckdb as backend
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.errors import CheckpointError


@attrs.frozen
class Tick:
    """Adds one."""

    by: int = 1
    """Added to the counter."""


@attrs.frozen
class Count(StateSchema[Tick]):
    """A counter."""

    n: int = 0
    """The count."""

    def apply(self, update: Tick) -> Count:
        return Count(self.n + update.by)


@pytest.fixture
def collector() -> Iterator[list[str]]:
    """The collections that start while the test runs (their generation), with the
    collector enabled and eager to run (a collection every 10 new container objects)."""
    started: list[str] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(f"gen{info['generation']}")

    was_enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.enable()
    gc.set_threshold(10, 2, 2)
    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)
        if not was_enabled:
            gc.disable()


def saved(steps: int) -> DuckDBCheckpointer[Count]:
    cp = DuckDBCheckpointer(Count)
    state = Count()
    for step in range(steps):
        writes = (NodeWrite(node="tick", updates=(Tick(),)),) if step else ()
        cp.save(Checkpoint(thread_id="t", step=step, state=state, next=("tick",), writes=writes))
        state = state.apply(Tick())
    return cp


def test_no_collection_runs_while_a_long_read_builds_its_checkpoints(
    collector: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with saved(backend._MANY + 50) as cp:
        built: list[str] = []
        build_many = backend.DuckDBCheckpointer._build_many

        def watched(self: DuckDBCheckpointer[Count], *args: object) -> object:
            collector.clear()
            out = build_many(self, *args)  # type: ignore[arg-type]  # the arguments _build passes on
            built.extend(collector)
            return out

        monkeypatch.setattr(backend.DuckDBCheckpointer, "_build_many", watched)
        history = cp.history("t")
        assert [c.state.n for c in history] == list(reversed(range(backend._MANY + 50)))
        assert built == []
        assert gc.isenabled()
        # The collector was eager enough to run during the read had it not been paused.
        monkeypatch.setattr(backend, "collector_paused", contextlib.nullcontext)
        collector.clear()
        cp.history("t")
        assert collector


def test_the_collector_runs_again_after_a_read_that_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with saved(backend._MANY + 1) as cp:

        def failing(*args: object) -> None:
            assert not gc.isenabled()
            raise CheckpointError("cannot read")

        monkeypatch.setattr(backend.DuckDBCheckpointer, "_build_many", failing)
        with pytest.raises(CheckpointError, match="cannot read"):
            cp.history("t")
    assert gc.isenabled()


def test_an_application_that_disabled_the_collector_keeps_it_disabled() -> None:
    gc.disable()
    try:
        with saved(backend._MANY + 1) as cp:
            assert len(cp.history("t")) == backend._MANY + 1
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_enabled_again_only_when_the_last_thread_leaves() -> None:
    assert gc.isenabled()
    first_in, second_in, first_may_leave, first_left = (threading.Event() for _ in range(4))
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            first_may_leave.wait(10)
        first_left.set()

    worker = threading.Thread(target=first)
    worker.start()
    assert first_in.wait(10)
    with collector_paused():
        second_in.set()
        first_may_leave.set()
        assert first_left.wait(10)
        seen.append(gc.isenabled())  # the other thread left: this one is still inside
        with collector_paused():  # reentrant
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    worker.join(10)
    assert seen == [False, False, False]
    assert gc.isenabled()
