"""Failures: what a failing node, reducer, route, step limit, timeout or cancel leaves behind."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import attrs
import pytest

from typedflow import (
    END,
    Checkpoint,
    Completed,
    Goto,
    InMemoryCheckpointer,
    Node,
    NodeError,
    NodeFailure,
    NodeTimeoutError,
    ReducerError,
    RoutingError,
    RunError,
    Runner,
    StateSchema,
    StepLimitError,
    UpdateTypeError,
)


@attrs.frozen
class Note:
    """An update: one line of text for the log."""

    text: str
    """The line to append."""


@attrs.frozen
class Log(StateSchema[Note]):
    """A state that records every update in the order the reducer applied it.

    Two texts make the reducer misbehave: ``"poison"`` makes it raise and
    ``"wrong-state"`` makes it return something that is not a ``Log``.
    """

    lines: tuple[str, ...] = ()
    """The applied updates' texts, oldest first."""

    def apply(self, update: Note) -> Log:
        if update.text == "poison":
            raise ValueError("cannot digest poison")
        if update.text == "wrong-state":
            return cast("Log", update)  # cast: a reducer that breaks its contract at run time
        return Log(lines=(*self.lines, update.text))


def recorder(name: str, calls: list[str]) -> Node[Log]:
    """A node that logs its name and how many lines it saw, and counts its calls."""

    @Log.node(name=name)
    def node(state: Log) -> Note:
        calls.append(name)
        return Note(f"{name}@{len(state.lines)}")

    return node


@pytest.fixture
def store() -> InMemoryCheckpointer[Log]:
    return InMemoryCheckpointer(Log)


def run_until_failure(
    runner: Runner[Log], thread_id: str, error: type[RunError]
) -> tuple[list[Checkpoint[Log]], RunError]:
    """Stream a run that must fail; return the checkpoints it yielded and the error."""
    seen: list[Checkpoint[Log]] = []
    stream = runner.stream(Log(), thread_id=thread_id)
    with pytest.raises(error) as info:
        # extend() keeps the checkpoints yielded before the error.
        seen.extend(stream)
    return seen, info.value


# ----- a node that raises ------------------------------------------------------------------


def flaky_graph(
    store: InMemoryCheckpointer[Log], calls: list[str], broken: list[bool]
) -> Runner[Log]:
    """start -> [ok, flaky] -> end; ``flaky`` raises while ``broken[0]`` is true."""

    @Log.node
    def flaky(state: Log) -> Note:
        calls.append("flaky")
        if broken[0]:
            raise ValueError("disk on fire")
        return Note(f"flaky@{len(state.lines)}")

    return Runner(
        Log,
        nodes=[recorder("start", calls), recorder("ok", calls), flaky, recorder("end", calls)],
        entry="start",
        edges={"start": ["ok", "flaky"], "flaky": "end"},
        checkpointer=store,
    )


def test_a_node_that_raises(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    seen, error = run_until_failure(flaky_graph(store, calls, [True]), "t", NodeError)
    assert isinstance(error, NodeError)
    assert isinstance(error, RuntimeError)
    assert (error.thread_id, error.step, error.node) == ("t", 2, "flaky")
    message = str(error)
    assert "'flaky'" in message
    assert "'t'" in message
    assert "step 2" in message
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "disk on fire"

    # The last good checkpoint is intact.
    assert [cp.step for cp in seen] == [0, 1, 2]
    good = seen[1]
    assert store.load_at("t", 1) == good

    failed = store.load("t")
    assert failed == seen[2]
    assert failed.step == 2
    assert failed.status == "error"
    assert failed.state == good.state
    assert failed.next == good.next == ("ok", "flaky")
    assert failed.writes == ()
    assert [(w.node, w.updates) for w in failed.pending] == [("ok", (Note("ok@1"),))]
    (failure,) = failed.failures
    assert failure.duration is not None
    assert failure == NodeFailure(
        node="flaky",
        error_type="builtins.ValueError",
        message="disk on fire",
        duration=failure.duration,
    )
    assert failed.reason is not None
    assert "disk on fire" in failed.reason
    assert not failed.done


def test_resume_after_a_failure_reruns_only_the_failed_node(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    broken = [True]
    runner = flaky_graph(store, calls, broken)
    with pytest.raises(NodeError):
        runner.invoke(Log(), thread_id="t")
    assert calls == ["start", "ok", "flaky"]

    broken[0] = False
    result = runner.resume("t")
    assert isinstance(result, Completed)
    assert calls == ["start", "ok", "flaky", "flaky", "end"]

    reference_calls: list[str] = []
    reference = flaky_graph(InMemoryCheckpointer(Log), reference_calls, [False]).invoke(Log())
    assert result.state == reference.state
    assert result.state.lines == ("start@0", "ok@1", "flaky@1", "end@3")


def test_every_failure_of_a_step_is_recorded(store: InMemoryCheckpointer[Log]) -> None:
    def failing(name: str) -> Node[Log]:
        @Log.node(name=name)
        def node(state: Log) -> Note:
            raise KeyError(name)

        return node

    runner = Runner(
        Log,
        nodes=[failing("x"), recorder("y", []), failing("z")],
        entry=["x", "y", "z"],
        checkpointer=store,
    )
    with pytest.raises(NodeError) as info:
        runner.invoke(Log(), thread_id="t")
    assert info.value.node == "x"
    failed = store.load("t")
    assert [f.node for f in failed.failures] == ["x", "z"]
    assert {f.error_type for f in failed.failures} == {"builtins.KeyError"}
    assert [w.node for w in failed.pending] == ["y"]


def test_an_async_node_that_raises_under_sync_invoke(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    async def broken(state: Log) -> Note:
        await asyncio.sleep(0)
        raise OSError("network down")

    runner = Runner(Log, nodes=[broken], entry="broken", checkpointer=store)
    with pytest.raises(NodeError) as info:
        runner.invoke(Log(), thread_id="t")
    assert info.value.node == "broken"
    assert isinstance(info.value.__cause__, OSError)
    assert not isinstance(info.value, NodeTimeoutError)
    assert store.load("t").failures[0].error_type == "builtins.OSError"


# ----- how long a failed node ran ----------------------------------------------------------


def test_a_failure_says_how_long_the_node_ran(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def slow_then_fails(state: Log) -> Note:
        time.sleep(0.05)
        raise ValueError("late")

    @Log.node
    async def slow_then_fails_async(state: Log) -> Note:
        await asyncio.sleep(0.05)
        raise ValueError("late too")

    @Log.node
    def slow_then_sloppy(state: Log) -> Note:
        time.sleep(0.05)
        return cast("Note", 42)  # cast: untyped code returning the wrong type

    runner = Runner(
        Log,
        nodes=[slow_then_fails, slow_then_fails_async, slow_then_sloppy],
        entry=["slow_then_fails", "slow_then_fails_async", "slow_then_sloppy"],
        checkpointer=store,
    )
    with pytest.raises(NodeError):
        asyncio.run(runner.ainvoke(Log(), thread_id="t"))
    failures = store.load("t").failures
    assert [f.node for f in failures] == [
        "slow_then_fails",
        "slow_then_fails_async",
        "slow_then_sloppy",
    ]
    for f in failures:
        # asyncio may wake a sleeper up to its clock's resolution early
        assert f.duration is not None
        assert f.duration >= 0.045, f


def test_a_timed_out_node_ran_as_long_as_the_timeout(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    async def stuck(state: Log) -> Note:
        await asyncio.Event().wait()
        return Note("unreachable")

    runner = Runner(Log, nodes=[stuck], entry="stuck", checkpointer=store, node_timeout=0.05)
    with pytest.raises(NodeTimeoutError):
        asyncio.run(runner.ainvoke(Log(), thread_id="t"))
    (failure,) = store.load("t").failures
    assert failure.duration is not None
    assert failure.duration >= 0.045


def test_a_failure_of_the_reducer_or_a_route_has_no_node_duration(
    store: InMemoryCheckpointer[Log],
) -> None:
    @Log.node
    def poison(state: Log) -> Note:
        return Note("poison")

    def nowhere(state: Log) -> str:
        raise LookupError("no idea where to go")

    reducer = Runner(Log, nodes=[poison], entry="poison", checkpointer=store)
    with pytest.raises(ReducerError):
        reducer.invoke(Log(), thread_id="reducer")
    route = Runner(
        Log,
        nodes=[recorder("a", []), recorder("b", [])],
        entry="a",
        routes={"a": nowhere},
        checkpointer=store,
    )
    with pytest.raises(RoutingError):
        route.invoke(Log(), thread_id="route")
    for tid in ("reducer", "route"):
        (failure,) = store.load(tid).failures
        assert failure.duration is None


# ----- a node that returns the wrong type --------------------------------------------------


def test_a_node_returning_a_wrong_type(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def sloppy(state: Log) -> Note:
        return cast("Note", "just text")  # cast: untyped code returning the wrong type

    runner = Runner(
        Log, nodes=[recorder("ok", []), sloppy], entry=["ok", "sloppy"], checkpointer=store
    )
    seen, error = run_until_failure(runner, "t", UpdateTypeError)
    assert isinstance(error, UpdateTypeError)
    assert isinstance(error, TypeError)
    assert (error.thread_id, error.step, error.node) == ("t", 1, "sloppy")
    message = str(error)
    assert "'sloppy'" in message
    assert "step 1" in message
    assert "'t'" in message
    assert "'just text'" in message
    assert "Note" in message
    assert store.load_at("t", 0) == seen[0]
    failed = store.load("t")
    assert (failed.step, failed.status, failed.state) == (1, "error", Log())
    assert [f.node for f in failed.failures] == ["sloppy"]
    assert [w.node for w in failed.pending] == ["ok"]


@pytest.mark.parametrize(
    "output",
    [
        pytest.param([Note("fine"), 42], id="in-a-list"),
        pytest.param(Goto[object]("x", update=b"bytes"), id="in-a-goto"),
        pytest.param(Goto[object]("x", update=[Note("fine"), None]), id="in-a-goto-list"),
    ],
)
def test_a_wrong_type_inside_a_list_or_goto(output: object) -> None:
    @Log.node
    def sloppy(state: Log) -> Note:
        return cast("Note", output)  # cast: untyped code returning the wrong type

    runner = Runner(Log, nodes=[sloppy, recorder("x", [])], entry="sloppy")
    with pytest.raises(UpdateTypeError) as info:
        runner.invoke(Log(), thread_id="t")
    assert info.value.node == "sloppy"


# ----- the reducer -------------------------------------------------------------------------


def test_a_reducer_that_raises(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def poison(state: Log) -> Note:
        return Note("poison")

    runner = Runner(
        Log,
        nodes=[recorder("start", []), recorder("ok", []), poison],
        entry="start",
        edges={"start": ["ok", "poison"]},
        checkpointer=store,
    )
    seen, error = run_until_failure(runner, "t", ReducerError)
    assert isinstance(error, ReducerError)
    assert (error.thread_id, error.step, error.node) == ("t", 2, "poison")
    assert isinstance(error.__cause__, ValueError)
    assert "'poison'" in str(error)
    assert store.load_at("t", 1) == seen[1]
    failed = store.load("t")
    assert failed.status == "error"
    assert failed.state == seen[1].state
    assert failed.next == ("ok", "poison")
    # Nothing of the step was applied; every node's write is kept.
    assert [w.node for w in failed.pending] == ["ok", "poison"]
    assert [f.node for f in failed.failures] == ["poison"]
    assert failed.failures[0].error_type == "typedflow.errors.ReducerError"


def test_a_reducer_returning_another_type(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def bad(state: Log) -> Note:
        return Note("wrong-state")

    runner = Runner(Log, nodes=[bad], entry="bad", checkpointer=store)
    with pytest.raises(ReducerError) as info:
        runner.invoke(Log(), thread_id="t")
    assert info.value.node == "bad"
    assert "must return a new Log" in str(info.value)
    assert store.load("t").status == "error"


# ----- routes ------------------------------------------------------------------------------


def test_a_route_that_raises(store: InMemoryCheckpointer[Log]) -> None:
    def route(state: Log) -> str:
        raise LookupError("no idea where to go")

    runner = Runner(
        Log, nodes=[recorder("a", [])], entry="a", routes={"a": route}, checkpointer=store
    )
    seen, error = run_until_failure(runner, "t", RoutingError)
    assert isinstance(error, RoutingError)
    assert (error.thread_id, error.step, error.node) == ("t", 1, "a")
    assert isinstance(error.__cause__, LookupError)
    assert "no idea where to go" in str(error)
    assert store.load_at("t", 0) == seen[0]
    failed = store.load("t")
    assert (failed.step, failed.status, failed.state, failed.next) == (1, "error", Log(), ("a",))
    assert [w.node for w in failed.pending] == ["a"]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("nowhere", id="unknown-name"),
        pytest.param(["a", "nowhere"], id="unknown-in-list"),
        pytest.param(7, id="not-a-name"),
        pytest.param(None, id="none"),
    ],
)
def test_a_route_returning_a_bad_target(target: object, store: InMemoryCheckpointer[Log]) -> None:
    def route(state: Log) -> str:
        return cast("str", target)  # cast: untyped code returning a bad target

    runner = Runner(
        Log, nodes=[recorder("a", [])], entry="a", routes={"a": route}, checkpointer=store
    )
    with pytest.raises(RoutingError) as info:
        runner.invoke(Log(), thread_id="t")
    assert (info.value.thread_id, info.value.step, info.value.node) == ("t", 1, "a")
    assert store.load("t").status == "error"


def test_a_goto_to_an_unknown_node() -> None:
    @Log.node
    def lost(state: Log) -> Goto[Note]:
        return Goto("nowhere")

    runner = Runner(Log, nodes=[lost], entry="lost")
    with pytest.raises(RoutingError, match="'nowhere'") as info:
        runner.invoke(Log(), thread_id="t")
    assert info.value.node == "lost"


# ----- the step limit ----------------------------------------------------------------------


def loop(store: InMemoryCheckpointer[Log], calls: list[str], step_limit: int) -> Runner[Log]:
    """One node looping until the log has five lines."""
    return Runner(
        Log,
        nodes=[recorder("a", calls)],
        entry="a",
        routes={"a": lambda s: END if len(s.lines) >= 5 else "a"},
        checkpointer=store,
        step_limit=step_limit,
    )


def test_the_step_limit_stops_the_run_and_saves_the_last_step(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    runner = loop(store, calls, step_limit=3)
    with pytest.raises(StepLimitError) as info:
        runner.invoke(Log(), thread_id="t")
    assert (info.value.thread_id, info.value.step, info.value.limit) == ("t", 3, 3)
    assert "step limit of 3" in str(info.value)
    assert len(calls) == 3
    last = store.load("t")
    assert (last.step, last.status, last.next) == (3, "ok", ("a",))
    assert last.state.lines == ("a@0", "a@1", "a@2")

    with pytest.raises(StepLimitError):
        runner.resume("t", step_limit=1)
    assert store.load("t").step == 4

    result = runner.resume("t", step_limit=10)
    assert isinstance(result, Completed)
    assert result.state.lines == ("a@0", "a@1", "a@2", "a@3", "a@4")
    assert len(calls) == 5


def test_the_step_limit_counts_the_steps_of_one_call(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    result = loop(store, calls, step_limit=100).invoke(Log(), thread_id="t", step_limit=5)
    assert isinstance(result, Completed)
    assert result.steps == 5
    with pytest.raises(StepLimitError):
        loop(store, calls, step_limit=100).invoke(Log(), thread_id="u", step_limit=4)


# ----- async: timeouts and cancellation ----------------------------------------------------


def test_an_async_node_past_the_timeout(store: InMemoryCheckpointer[Log]) -> None:
    never = asyncio.Event()

    @Log.node
    async def stuck(state: Log) -> Note:
        await never.wait()
        return Note("unreachable")

    @Log.node
    async def quick(state: Log) -> Note:
        return Note("quick")

    runner = Runner(
        Log, nodes=[quick, stuck], entry=["quick", "stuck"], checkpointer=store, node_timeout=0.05
    )
    with pytest.raises(NodeTimeoutError) as info:
        asyncio.run(runner.ainvoke(Log(), thread_id="t"))
    error = info.value
    assert isinstance(error, NodeError)
    assert isinstance(error, TimeoutError)
    assert (error.thread_id, error.step, error.node) == ("t", 1, "stuck")
    assert "node_timeout" in str(error)
    failed = store.load("t")
    assert failed.status == "error"
    assert [f.node for f in failed.failures] == ["stuck"]
    assert [w.node for w in failed.pending] == ["quick"]


@pytest.mark.parametrize("node_timeout", [None, 60.0])
def test_a_node_raising_timeout_error_itself_is_no_node_timeout(node_timeout: float | None) -> None:
    @Log.node
    async def impatient(state: Log) -> Note:
        raise TimeoutError("the remote service timed out")

    runner = Runner(Log, nodes=[impatient], entry="impatient", node_timeout=node_timeout)
    with pytest.raises(NodeError) as info:
        asyncio.run(runner.ainvoke(Log()))
    assert not isinstance(info.value, NodeTimeoutError)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert "the remote service timed out" in str(info.value)


def test_an_async_node_raising_cancelled_error_is_a_node_failure(
    store: InMemoryCheckpointer[Log],
) -> None:
    @Log.node
    async def gives_up(state: Log) -> Note:
        raise asyncio.CancelledError("the node cancelled itself")

    runner = Runner(
        Log,
        nodes=[gives_up, recorder("ok", [])],
        entry=["ok", "gives_up"],
        checkpointer=store,
    )
    with pytest.raises(NodeError) as info:
        asyncio.run(runner.ainvoke(Log(), thread_id="t"))
    assert info.value.node == "gives_up"
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    failed = store.load("t")
    assert failed.status == "error"
    assert [f.error_type for f in failed.failures] == ["asyncio.exceptions.CancelledError"]
    assert [w.node for w in failed.pending] == ["ok"]


def test_cancelling_ainvoke_propagates(store: InMemoryCheckpointer[Log]) -> None:
    started = asyncio.Event()
    cancelled: list[str] = []

    def waiting(name: str) -> Node[Log]:
        @Log.node(name=name)
        async def node(state: Log) -> Note:
            try:
                started.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
            return Note(name)

        return node

    runner = Runner(Log, nodes=[waiting("a"), waiting("b")], entry=["a", "b"], checkpointer=store)

    async def main() -> None:
        task = asyncio.create_task(runner.ainvoke(Log(), thread_id="t"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())
    assert sorted(cancelled) == ["a", "b"]
    # The step never completed or failed: only the input is stored.
    assert store.load("t").step == 0
