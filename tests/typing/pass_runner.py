"""Must pass mypy: a ``Runner[S]`` gives back exactly ``S`` from every entry point, not ``Any``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

from tests.typing.pass_nodes import add_one, inc, mixed, restart, review, stop
from tests.typing.pass_schemas import Counter, Inc, Reset, Tally
from typedflow import (
    END,
    Checkpoint,
    Checkpointer,
    Completed,
    InMemoryCheckpointer,
    Interrupted,
    NodeWrite,
    Runner,
    RunResult,
)


def counter_runner() -> Runner[Counter]:
    """``inc`` then ``review``, stopping before ``review``."""
    runner = Runner(
        Counter,
        nodes=[inc, review, stop],
        entry="inc",
        edges={"inc": "review", "review": END},
        checkpointer=InMemoryCheckpointer(Counter),
        interrupt_before=["review"],
    )
    assert_type(runner, Runner[Counter])
    assert_type(runner.schema, type[Counter])
    assert_type(runner.checkpointer, Checkpointer[Counter] | None)
    return runner


def looping_runner() -> Runner[Counter]:
    """A conditional route: a route's state parameter is the runner's schema, not ``Any``."""
    return Runner(
        Counter,
        nodes=[inc],
        entry="inc",
        routes={"inc": lambda state: END if assert_type(state, Counter).n >= 3 else "inc"},
    )


def describe(result: RunResult[Counter]) -> str:
    """``isinstance`` narrows a run result; both kinds hold a ``Counter``."""
    assert_type(result, Completed[Counter] | Interrupted[Counter])
    assert_type(result.state, Counter)
    assert_type(result.checkpoint, Checkpoint[Counter])
    if isinstance(result, Interrupted):
        assert_type(result, Interrupted[Counter])
        assert_type(result.reason, str)
        assert_type(result.state, Counter)
        return f"interrupted at n={result.state.n}: {result.reason}"
    assert_type(result, Completed[Counter])
    assert_type(result.state, Counter)
    return f"completed at n={result.state.n}"


def updates_of(checkpoints: Iterator[Checkpoint[Counter]] | list[Checkpoint[Counter]]) -> list[Inc]:
    """Every update written in these checkpoints, typed as the schema's update type."""
    found: list[Inc] = []
    for checkpoint in checkpoints:
        assert_type(checkpoint.state, Counter)
        assert_type(checkpoint.writes, tuple[NodeWrite[Inc], ...])
        for write in checkpoint.writes:
            assert_type(write.updates, tuple[Inc, ...])
            found.extend(write.updates)
    return found


def check_runner() -> None:
    """Run what the types above describe."""
    runner = counter_runner()
    first = runner.invoke(Counter(), thread_id="t1")
    assert_type(first, Completed[Counter] | Interrupted[Counter])
    assert describe(first) == "interrupted at n=1: before node 'review'"

    resumed = runner.resume("t1", update=Inc(10))
    assert_type(resumed, Completed[Counter] | Interrupted[Counter])
    assert describe(resumed) == "completed at n=11"

    forked = runner.fork("t1", 1, "t1-fork", update=Inc(100))
    assert_type(forked, Checkpoint[Counter])
    assert_type(forked.state, Counter)
    assert forked.state == Counter(n=101)

    stream = runner.stream(Counter(n=5), thread_id="t2")
    assert_type(stream, Iterator[Checkpoint[Counter]])
    assert updates_of(stream) == [Inc()]

    from_step = runner.resume("t1", from_step=1, as_thread="t1-again")
    assert describe(from_step) == "completed at n=1"

    # Two nodes in one step, one of which interrupts: the other's write waits in ``pending``.
    both = Runner(Counter, nodes=[inc, stop], entry=["inc", "stop"])
    halted = both.invoke(Counter(), thread_id="t3")
    assert describe(halted) == "interrupted at n=0: stop: needs a human"
    assert_type(halted.checkpoint.pending, tuple[NodeWrite[Inc], ...])
    assert [u for w in halted.checkpoint.pending for u in w.updates] == [Inc()]

    assert describe(looping_runner().invoke(Counter())) == "completed at n=3"


async def acheck_runner() -> None:
    """The asyncio entry points, on a schema whose update type is a union."""
    runner = Runner(
        Tally,
        nodes=[mixed, add_one, restart],
        entry="mixed",
        edges={"mixed": "add_one"},
        checkpointer=InMemoryCheckpointer(Tally),
        interrupt_after=["add_one"],
    )
    assert_type(runner, Runner[Tally])

    result = await runner.ainvoke(Tally(), thread_id="a1")
    assert_type(result, Completed[Tally] | Interrupted[Tally])
    assert isinstance(result, Interrupted)
    assert_type(result.state, Tally)
    assert (result.state, result.reason) == (Tally(n=12), "after node 'add_one'")

    resumed = await runner.aresume("a1", update=Reset(to=0))
    assert_type(resumed, Completed[Tally] | Interrupted[Tally])
    assert isinstance(resumed, Completed)
    assert resumed.state == Tally(n=0)

    stream = runner.astream(Tally(n=1), thread_id="a2")
    assert_type(stream, AsyncIterator[Checkpoint[Tally]])
    written: list[Inc | Reset] = []
    async for checkpoint in stream:
        assert_type(checkpoint.state, Tally)
        assert_type(checkpoint.writes, tuple[NodeWrite[Inc | Reset], ...])
        assert_type(checkpoint.pending, tuple[NodeWrite[Inc | Reset], ...])
        written.extend(u for w in checkpoint.writes for u in w.updates)
    assert written == [Reset(10), Inc(), Inc()]
