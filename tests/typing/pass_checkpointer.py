"""Must pass mypy: checkpointers are typed by their state schema, and so is all they load."""

from __future__ import annotations

from typing import assert_type

from tests.typing.pass_nodes import inc, restart
from tests.typing.pass_schemas import Counter, Inc, Reset, Tally
from typedflow import (
    Checkpoint,
    Checkpointer,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    NodeWrite,
    Runner,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


def loaded_types(saver: HistoryCheckpointer[Counter], thread_id: str) -> list[Inc]:
    """What the history contract gives back, typed by the schema; returns the updates written."""
    assert_type(saver.load(thread_id), Checkpoint[Counter])
    assert_type(saver.load_at(thread_id, 0), Checkpoint[Counter])
    assert_type(saver.history(thread_id), list[Checkpoint[Counter]])
    found: list[Inc] = []
    for checkpoint in saver.history(thread_id, limit=10):
        assert_type(checkpoint, Checkpoint[Counter])
        assert_type(checkpoint.state, Counter)
        assert_type(checkpoint.writes, tuple[NodeWrite[Inc], ...])
        assert_type(checkpoint.pending, tuple[NodeWrite[Inc], ...])
        for write in checkpoint.writes:
            assert_type(write.updates, tuple[Inc, ...])
            assert_type(write.duration, float)
            found[:0] = write.updates  # newest first: put older updates in front
        for failure in checkpoint.failures:
            assert_type(failure.duration, float | None)  # None: not the node's own run
    return found


def check_checkpointers() -> None:
    """Run what the types above describe, on both backends."""
    saver = InMemoryCheckpointer(Counter)
    assert_type(saver, InMemoryCheckpointer[Counter])
    assert_type(saver.schema, type[Counter])
    Runner(Counter, nodes=[inc], entry="inc", checkpointer=saver).invoke(Counter(), thread_id="t")
    assert loaded_types(saver, "t") == [Inc()]

    forked = saver.fork("t", 0, "t-fork", update=Inc(7))
    assert_type(forked, Checkpoint[Counter])
    assert_type(forked.state, Counter)
    assert_type(forked.writes, tuple[NodeWrite[Inc], ...])
    assert forked.state == Counter(n=7)
    assert [u for w in forked.writes for u in w.updates] == [Inc(7)]

    # Seen through the contract's base classes, the types are the same.
    history: HistoryCheckpointer[Counter] = saver
    assert_type(history.fork("t", 1, "t-copy"), Checkpoint[Counter])
    latest_only: Checkpointer[Counter] = saver
    assert_type(latest_only.load("t-copy"), Checkpoint[Counter])
    assert latest_only.load("t-copy").state == Counter(n=1)

    # A union update type: a fork may apply any member.
    tallies = InMemoryCheckpointer(Tally)
    assert_type(tallies, InMemoryCheckpointer[Tally])
    Runner(Tally, nodes=[restart], entry="restart", checkpointer=tallies).invoke(
        Tally(n=4), thread_id="u"
    )
    assert_type(tallies.fork("u", 0, "u-inc", update=Inc()), Checkpoint[Tally])
    assert tallies.fork("u", 1, "u-reset", update=Reset(9)).state == Tally(n=9)

    with DuckDBCheckpointer(Counter) as db:
        assert_type(db, DuckDBCheckpointer[Counter])
        runner = Runner(Counter, nodes=[inc], entry="inc", checkpointer=db)
        assert_type(runner, Runner[Counter])
        runner.invoke(Counter(n=2), thread_id="d")
        assert loaded_types(db, "d") == [Inc()]
        assert_type(db.fork("d", 1, "d-fork", update=Inc(3)), Checkpoint[Counter])
        assert db.load("d-fork").state == Counter(n=6)
