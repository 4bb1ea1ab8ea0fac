"""Must pass mypy: code generic over the state schema keeps it, and the aliases work at run time.

A user's own helpers may take any runner or checkpointer (``Runner[S]`` for a type
variable ``S`` of theirs). ``resume``, ``aresume`` and ``fork`` recover the update type
from the schema through a self type; they must still give back ``S`` itself there, not
``StateSchema[Any]``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, TypeVar, assert_type

from tests.typing.pass_nodes import inc
from tests.typing.pass_schemas import Counter, Inc
from typedflow import (
    FORK_WRITER,
    RESUME_WRITER,
    Checkpoint,
    Completed,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    Interrupted,
    NodeOutput,
    Route,
    Runner,
    RunResult,
    StateSchema,
)

S = TypeVar("S", bound=StateSchema[Any])
"""A user's own type variable for "any state schema"."""

# Aliases made of typedflow's aliases are evaluated at run time: they must be subscriptable.
CounterResult: TypeAlias = RunResult[Counter]
"""What a ``Counter`` run gives back."""
IncOutput: TypeAlias = NodeOutput[Inc]
"""What a ``Counter`` node may return."""
CounterRoute: TypeAlias = Route[Counter]
"""A conditional route of a ``Counter`` graph."""


def resume_any(runner: Runner[S], thread_id: str) -> RunResult[S]:
    """Resumes a thread of whatever schema the runner runs."""
    result = runner.resume(thread_id)
    assert_type(result, Completed[S] | Interrupted[S])
    assert_type(result.state, S)
    return result


async def aresume_any(runner: Runner[S], thread_id: str) -> S:
    """The asyncio form keeps ``S`` too."""
    result = await runner.aresume(thread_id)
    assert_type(result, Completed[S] | Interrupted[S])
    return result.state


def fork_any(runner: Runner[S], saver: HistoryCheckpointer[S], thread_id: str) -> list[S]:
    """Forks through the runner and through the checkpointer; both give checkpoints of ``S``."""
    by_runner = runner.fork(thread_id, 0, f"{thread_id}-r")
    by_saver = saver.fork(thread_id, 0, f"{thread_id}-s")
    assert_type(by_runner, Checkpoint[S])
    assert_type(by_saver, Checkpoint[S])
    return [by_runner.state, by_saver.state]


def first_state(saver: HistoryCheckpointer[S], thread_id: str) -> S:
    """The contract's reads keep ``S``."""
    return saver.history(thread_id)[-1].state


def writer_names() -> tuple[Literal["__resume__"], Literal["__fork__"]]:
    """The writers of resume and fork updates are literal names, to compare ``write.node`` with."""
    return (RESUME_WRITER, FORK_WRITER)


def to_the_end(state: Counter) -> IncOutput:
    """A node function annotated with the run-time alias."""
    return Inc(2) if state.n < 2 else None


def interrupted_runner(saver: InMemoryCheckpointer[Counter]) -> Runner[Counter]:
    """``inc`` then ``to_the_end``, stopping before ``to_the_end``."""
    route: CounterRoute = lambda state: "__end__"  # noqa: E731  # the alias types a lambda
    return Runner(
        Counter,
        nodes=[inc, Counter.node(to_the_end)],
        entry="inc",
        edges={"inc": "to_the_end"},
        routes={"to_the_end": route},
        checkpointer=saver,
        interrupt_before=["to_the_end"],
    )


def check_generic() -> None:
    """Run what the types above describe."""
    saver = InMemoryCheckpointer(Counter)
    runner = interrupted_runner(saver)
    first = runner.invoke(Counter(), thread_id="g")
    assert_type(first, CounterResult)
    assert isinstance(first, Interrupted)
    done = resume_any(runner, "g")
    assert isinstance(done, Completed)
    assert done.state == Counter(n=3)
    assert fork_any(runner, saver, "g") == [Counter(), Counter()]
    assert first_state(saver, "g") == Counter()
    assert writer_names() == ("__resume__", "__fork__")


async def acheck_generic() -> None:
    """The asyncio form, run."""
    runner = interrupted_runner(InMemoryCheckpointer(Counter))
    assert isinstance(await runner.ainvoke(Counter(), thread_id="a"), Interrupted)
    assert await aresume_any(runner, "a") == Counter(n=3)
