"""The runner's step semantics: super-steps, routing, async nodes, checkpoints and resume."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import attrs
import pytest

from typedflow import (
    END,
    Checkpoint,
    Completed,
    ConflictError,
    Goto,
    GraphError,
    InMemoryCheckpointer,
    Interrupted,
    Node,
    NodeWrite,
    ParentRef,
    Runner,
    StateSchema,
    StepLimitError,
    ThreadNotFoundError,
    _clock,
)


@attrs.frozen
class Note:
    """An update: one line of text for the log."""

    text: str
    """The line to append."""


@attrs.frozen
class Log(StateSchema[Note]):
    """A state that records every update in the order the reducer applied it."""

    lines: tuple[str, ...] = ()
    """The applied updates' texts, oldest first."""

    def apply(self, update: Note) -> Log:
        return Log(lines=(*self.lines, update.text))


def recorder(name: str, calls: list[str] | None = None) -> Node[Log]:
    """A node that logs its name and how many lines it saw, so a test can tell which
    state snapshot it ran against."""

    @Log.node(name=name)
    def node(state: Log) -> Note:
        if calls is not None:
            calls.append(name)
        return Note(f"{name}@{len(state.lines)}")

    return node


def async_recorder(name: str) -> Node[Log]:
    """An async :func:`recorder`."""

    @Log.node(name=name)
    async def node(state: Log) -> Note:
        await asyncio.sleep(0)
        return Note(f"{name}@{len(state.lines)}")

    return node


def ran(cp: Checkpoint[Log]) -> tuple[str, ...]:
    """The nodes that wrote in a checkpoint's step, in queue order."""
    return tuple(w.node for w in cp.writes)


@pytest.fixture
def store() -> InMemoryCheckpointer[Log]:
    return InMemoryCheckpointer(Log)


# ----- super-steps ---------------------------------------------------------------------------


def test_fan_out_by_edge_list_runs_one_step_on_one_snapshot(
    store: InMemoryCheckpointer[Log],
) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("start"), recorder("a"), recorder("b")],
        entry="start",
        edges={"start": ["a", "b"]},
        checkpointer=store,
    )
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Completed)
    # Both branches ran in step 2 against the state after step 1 (one line), even
    # though a's update was applied before b's.
    assert result.state.lines == ("start@0", "a@1", "b@1")
    assert result.steps == 2
    step2 = store.load_at("t", 2)
    assert ran(step2) == ("a", "b")
    assert store.load_at("t", 1).next == ("a", "b")


def test_updates_are_applied_in_queue_order(store: InMemoryCheckpointer[Log]) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("start"), recorder("a"), recorder("b")],
        entry="start",
        edges={"start": ["b", "a"]},
        checkpointer=store,
    )
    result = runner.invoke(Log(), thread_id="t")
    assert result.state.lines == ("start@0", "b@1", "a@1")
    assert ran(store.load_at("t", 2)) == ("b", "a")


def test_fan_out_by_a_route_returning_several_names() -> None:
    runner = Runner(
        Log,
        nodes=[recorder("start"), recorder("a"), recorder("b")],
        entry="start",
        routes={"start": lambda s: ["b", "a"] if s.lines else END},
    )
    result = runner.invoke(Log())
    assert result.state.lines == ("start@0", "b@1", "a@1")
    assert result.checkpoint.step == 2


def test_fan_out_by_goto_with_several_names(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def start(state: Log) -> Goto[Note]:
        return Goto(["a", "b"])

    runner = Runner(
        Log, nodes=[start, recorder("a"), recorder("b")], entry="start", checkpointer=store
    )
    result = runner.invoke(Log(), thread_id="t")
    # Goto without an update writes nothing, so both branches saw the empty log.
    assert result.state.lines == ("a@0", "b@0")
    step1 = store.load_at("t", 1)
    assert step1.writes == (
        NodeWrite(node="start", goto=("a", "b"), duration=step1.writes[0].duration),
    )
    assert step1.next == ("a", "b")


def test_join_reached_from_two_branches_runs_once(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = Runner(
        Log,
        nodes=[recorder("start"), recorder("a"), recorder("b"), recorder("join", calls)],
        entry="start",
        edges={"start": ["a", "b"], "a": "join", "b": "join"},
        checkpointer=store,
    )
    result = runner.invoke(Log(), thread_id="t")
    assert calls == ["join"]
    assert store.load_at("t", 2).next == ("join",)
    assert result.state.lines == ("start@0", "a@1", "b@1", "join@3")


def test_a_branch_that_ends_leaves_the_others_running(store: InMemoryCheckpointer[Log]) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("start"), recorder("a"), recorder("b"), recorder("c")],
        entry="start",
        edges={"start": ["a", "b"], "a": END, "b": "c"},
        checkpointer=store,
    )
    result = runner.invoke(Log(), thread_id="t")
    assert store.load_at("t", 2).next == ("c",)
    assert result.state.lines == ("start@0", "a@1", "b@1", "c@3")


def test_static_edges_run_a_chain_one_node_per_step(store: InMemoryCheckpointer[Log]) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("a"), recorder("b"), recorder("c")],
        entry="a",
        edges={"a": "b", "b": ["c"], "c": END},
        checkpointer=store,
    )
    result = runner.invoke(Log(), thread_id="t")
    assert result.state.lines == ("a@0", "b@1", "c@2")
    assert [ran(cp) for cp in reversed(store.history("t"))] == [(), ("a",), ("b",), ("c",)]


def test_a_node_without_edge_or_route_ends_the_run() -> None:
    runner = Runner(Log, nodes=[recorder("a"), recorder("b")], entry="a")
    result = runner.invoke(Log())
    assert result.state.lines == ("a@0",)
    assert result.checkpoint.next == ()


def test_conditional_route_sees_the_state_after_the_step() -> None:
    seen: list[int] = []

    def route(state: Log) -> str:
        seen.append(len(state.lines))
        return END if len(state.lines) >= 3 else "a"

    runner = Runner(Log, nodes=[recorder("a")], entry="a", routes={"a": route})
    result = runner.invoke(Log())
    assert result.state.lines == ("a@0", "a@1", "a@2")
    assert seen == [1, 2, 3]
    assert result.steps == 3


def test_goto_overrides_the_static_edge_and_applies_its_update() -> None:
    @Log.node
    def start(state: Log) -> Goto[Note]:
        return Goto("b", update=Note("start"))

    runner = Runner(
        Log, nodes=[start, recorder("a"), recorder("b")], entry="start", edges={"start": "a"}
    )
    result = runner.invoke(Log())
    assert result.state.lines == ("start", "b@1")


def test_goto_with_several_updates_applies_them_in_order() -> None:
    @Log.node
    def start(state: Log) -> Goto[Note]:
        return Goto("a", update=[Note("one"), Note("two")])

    runner = Runner(Log, nodes=[start, recorder("a")], entry="start")
    result = runner.invoke(Log())
    assert result.state.lines == ("one", "two", "a@2")
    assert result.checkpoint.step == 2


def test_goto_end_stops_the_branch_despite_an_edge() -> None:
    @Log.node
    def start(state: Log) -> Goto[Note]:
        return Goto(END, update=Note("bye"))

    runner = Runner(Log, nodes=[start, recorder("a")], entry="start", edges={"start": "a"})
    result = runner.invoke(Log())
    assert isinstance(result, Completed)
    assert result.state.lines == ("bye",)
    assert result.checkpoint.done


def test_a_node_may_return_a_list_of_updates(store: InMemoryCheckpointer[Log]) -> None:
    @Log.node
    def many(state: Log) -> list[Note]:
        return [Note("x"), Note("y"), Note("z")]

    runner = Runner(Log, nodes=[many], entry="many", checkpointer=store)
    result = runner.invoke(Log(), thread_id="t")
    assert result.state.lines == ("x", "y", "z")
    assert store.load("t").writes[0].updates == (Note("x"), Note("y"), Note("z"))


def test_a_node_returning_none_changes_nothing_but_is_recorded(
    store: InMemoryCheckpointer[Log],
) -> None:
    @Log.node
    def idle(state: Log) -> None:
        return None

    runner = Runner(
        Log, nodes=[idle, recorder("a")], entry="idle", edges={"idle": "a"}, checkpointer=store
    )
    start = Log(lines=("input",))
    result = runner.invoke(start, thread_id="t")
    step1 = store.load_at("t", 1)
    assert step1.state is start
    assert ran(step1) == ("idle",)
    assert step1.writes[0].updates == ()
    assert result.state.lines == ("input", "a@1")


# ----- async nodes ---------------------------------------------------------------------------


def handshake_nodes() -> list[Node[Log]]:
    """Two async nodes that can only finish if they run at the same time: each waits
    for the other to have started (a bounded wait, so a sequential runner fails fast)."""
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def make(name: str, other: str) -> Node[Log]:
        @Log.node(name=name)
        async def node(state: Log) -> Note:
            started[name].set()
            await asyncio.wait_for(started[other].wait(), timeout=5)
            return Note(name)

        return node

    return [make("a", "b"), make("b", "a")]


def test_ainvoke_runs_the_async_nodes_of_a_step_concurrently() -> None:
    async def main() -> Completed[Log] | Interrupted[Log]:
        runner = Runner(Log, nodes=handshake_nodes(), entry=["a", "b"])
        return await runner.ainvoke(Log())

    result = asyncio.run(main())
    assert result.state.lines == ("a", "b")


def test_astream_runs_the_async_nodes_of_a_step_concurrently() -> None:
    async def main() -> list[Checkpoint[Log]]:
        runner = Runner(Log, nodes=handshake_nodes(), entry=["a", "b"])
        return [cp async for cp in runner.astream(Log(), thread_id="t")]

    cps = asyncio.run(main())
    assert [cp.step for cp in cps] == [0, 1]
    assert ran(cps[1]) == ("a", "b")


def test_sync_invoke_runs_async_nodes_concurrently_too() -> None:
    runner = Runner(Log, nodes=handshake_nodes(), entry=["a", "b"])
    assert runner.invoke(Log()).state.lines == ("a", "b")


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_concurrency_bounds_the_async_nodes_in_flight(limit: int) -> None:
    in_flight = 0
    most = 0

    def make(name: str) -> Node[Log]:
        @Log.node(name=name)
        async def node(state: Log) -> Note:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            # Yield often enough that every node allowed in could start meanwhile.
            for _ in range(10):
                await asyncio.sleep(0)
            in_flight -= 1
            return Note(name)

        return node

    names = [f"n{i}" for i in range(6)]
    runner = Runner(Log, nodes=[make(n) for n in names], entry=names, concurrency=limit)
    result = asyncio.run(runner.ainvoke(Log()))
    assert most == limit
    assert result.state.lines == tuple(names)


def test_async_updates_apply_in_queue_order_not_completion_order(
    store: InMemoryCheckpointer[Log],
) -> None:
    finished: list[str] = []
    b_done = asyncio.Event()

    @Log.node
    async def a(state: Log) -> Note:
        await asyncio.wait_for(b_done.wait(), timeout=5)
        finished.append("a")
        return Note("a")

    @Log.node
    async def b(state: Log) -> Note:
        finished.append("b")
        b_done.set()
        return Note("b")

    runner = Runner(Log, nodes=[a, b], entry=["a", "b"], checkpointer=store)
    result = asyncio.run(runner.ainvoke(Log(), thread_id="t"))
    assert finished == ["b", "a"]
    assert result.state.lines == ("a", "b")
    assert ran(store.load("t")) == ("a", "b")


def test_sync_and_async_nodes_share_a_step() -> None:
    runner = Runner(
        Log,
        nodes=[recorder("start"), async_recorder("x"), recorder("y"), async_recorder("z")],
        entry="start",
        edges={"start": ["x", "y", "z"]},
    )
    expected = ("start@0", "x@1", "y@1", "z@1")
    assert runner.invoke(Log()).state.lines == expected
    assert asyncio.run(runner.ainvoke(Log())).state.lines == expected


# ----- checkpoints ---------------------------------------------------------------------------


def test_one_checkpoint_per_step_and_step_zero_is_the_input(
    store: InMemoryCheckpointer[Log],
) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("a"), recorder("b")],
        entry="a",
        edges={"a": "b"},
        checkpointer=store,
    )
    start = Log(lines=("input",))
    result = runner.invoke(start, thread_id="t")
    history = list(reversed(store.history("t")))
    assert [cp.step for cp in history] == [0, 1, 2]
    zero = history[0]
    assert zero.state is start
    assert zero.next == ("a",)
    assert zero.writes == ()
    assert zero.status == "ok"
    assert zero.parent is None
    assert [cp.next for cp in history] == [("a",), ("b",), ()]
    assert [cp.status for cp in history] == ["ok", "ok", "ok"]
    assert [cp.done for cp in history] == [False, False, True]
    assert result.checkpoint == history[-1]
    assert result.thread_id == "t"


def test_checkpoint_fields(
    store: InMemoryCheckpointer[Log], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    stamp = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    monkeypatch.setattr(_clock, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(_clock, "now", lambda: stamp)

    def slow(name: str, seconds: float) -> Node[Log]:
        @Log.node(name=name)
        def node(state: Log) -> Note:
            clock[0] += seconds
            return Note(name)

        return node

    runner = Runner(
        Log,
        nodes=[slow("a", 2.5), slow("b", 0.5), recorder("c")],
        entry=["a", "b"],
        edges={"a": "c"},
        checkpointer=store,
    )
    runner.invoke(Log(), thread_id="t", metadata={"user": "u1", "try": 2})
    step1 = store.load_at("t", 1)
    assert step1.writes == (
        NodeWrite(node="a", updates=(Note("a"),), duration=2.5),
        NodeWrite(node="b", updates=(Note("b"),), duration=0.5),
    )
    assert step1.duration == 3.0
    assert step1.next == ("c",)
    assert step1.status == "ok"
    assert step1.reason is None
    assert step1.failures == ()
    assert step1.pending == ()
    for cp in store.history("t"):
        assert cp.created_at == stamp
        assert cp.metadata == {"user": "u1", "try": 2}
        assert cp.parent is None


def test_a_thread_id_is_made_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_clock, "new_thread_id", lambda: "generated")
    store = InMemoryCheckpointer(Log)
    runner = Runner(Log, nodes=[recorder("a")], entry="a", checkpointer=store)
    result = runner.invoke(Log())
    assert result.thread_id == "generated"
    assert store.load("generated").state.lines == ("a@0",)


def test_stream_yields_each_checkpoint_as_saved(store: InMemoryCheckpointer[Log]) -> None:
    runner = Runner(
        Log,
        nodes=[recorder("a"), recorder("b")],
        entry="a",
        edges={"a": "b"},
        checkpointer=store,
    )
    stream = runner.stream(Log(), thread_id="t")
    first = next(stream)
    # The stream is lazy: step 0 is saved, and nothing else has run yet.
    assert first == store.load("t")
    assert first.step == 0
    rest = list(stream)
    assert [cp.step for cp in rest] == [1, 2]
    assert [first, *rest] == list(reversed(store.history("t")))


def test_astream_yields_the_same_checkpoints_as_stream() -> None:
    nodes = [recorder("a"), async_recorder("b")]
    sync_store = InMemoryCheckpointer(Log)
    async_store = InMemoryCheckpointer(Log)
    fixed = datetime(2024, 1, 1, tzinfo=UTC)

    def normalised(
        cps: list[Checkpoint[Log]],
    ) -> list[tuple[int, Log, tuple[str, ...], tuple[str, ...]]]:
        return [(cp.step, cp.state, cp.next, ran(cp)) for cp in cps]

    def runner(store: InMemoryCheckpointer[Log]) -> Runner[Log]:
        return Runner(Log, nodes=nodes, entry="a", edges={"a": "b"}, checkpointer=store)

    sync_cps = list(runner(sync_store).stream(Log(), thread_id="t"))

    async def collect() -> list[Checkpoint[Log]]:
        return [cp async for cp in runner(async_store).astream(Log(), thread_id="t")]

    async_cps = asyncio.run(collect())
    assert normalised(async_cps) == normalised(sync_cps)
    assert len(async_cps) == 3
    assert [attrs.evolve(cp, created_at=fixed) for cp in async_cps] == [
        attrs.evolve(cp, created_at=fixed) for cp in reversed(async_store.history("t"))
    ]


def test_a_runner_without_checkpointer_runs_but_cannot_resume() -> None:
    runner = Runner(Log, nodes=[recorder("a"), recorder("b")], entry="a", edges={"a": "b"})
    assert runner.checkpointer is None
    result = runner.invoke(Log(), thread_id="t")
    assert result.state.lines == ("a@0", "b@1")
    assert [cp.step for cp in runner.stream(Log(), thread_id="t")] == [0, 1, 2]
    with pytest.raises(GraphError, match="no checkpointer"):
        runner.resume("t")
    with pytest.raises(GraphError, match="no checkpointer"):
        runner.fork("t", 0, "f")


# ----- resume --------------------------------------------------------------------------------


def counting_loop(
    store: InMemoryCheckpointer[Log], calls: list[str], until: int = 3
) -> Runner[Log]:
    """One node ``a`` looping until the log has ``until`` lines."""
    return Runner(
        Log,
        nodes=[recorder("a", calls)],
        entry="a",
        routes={"a": lambda s: END if len(s.lines) >= until else "a"},
        checkpointer=store,
    )


def test_resume_continues_from_the_latest_checkpoint(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    first = Runner(
        Log,
        nodes=[recorder("a", calls)],
        entry="a",
        routes={"a": lambda s: "a"},
        checkpointer=store,
        step_limit=2,
    )
    with pytest.raises(StepLimitError):
        first.invoke(Log(), thread_id="t")
    assert store.load("t").step == 2
    result = counting_loop(store, calls, until=4).resume("t")
    assert isinstance(result, Completed)
    assert result.steps == 2
    assert result.state.lines == ("a@0", "a@1", "a@2", "a@3")
    assert len(calls) == 4
    assert [cp.step for cp in store.history("t")] == [4, 3, 2, 1, 0]


def test_resuming_a_finished_thread_runs_nothing(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = counting_loop(store, calls)
    done = runner.invoke(Log(), thread_id="t")
    again = runner.resume("t")
    assert isinstance(again, Completed)
    assert again.steps == 0
    assert again.checkpoint == done.checkpoint
    assert len(calls) == 3
    assert store.load("t").step == 3


def test_resume_of_an_unknown_thread_raises(store: InMemoryCheckpointer[Log]) -> None:
    with pytest.raises(ThreadNotFoundError):
        counting_loop(store, []).resume("nope")


def test_resume_from_the_latest_step_by_number(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    Runner(
        Log,
        nodes=[recorder("a", calls)],
        entry="a",
        routes={"a": lambda s: "a"},
        checkpointer=store,
        interrupt_after=["a"],
    ).invoke(Log(), thread_id="t")
    assert store.load("t").step == 1
    result = counting_loop(store, calls).resume("t", from_step=1)
    assert result.state.lines == ("a@0", "a@1", "a@2")
    assert store.load("t").step == 3
    assert store.load_at("t", 2).parent is None


def test_resume_from_an_older_step_needs_a_new_thread(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = counting_loop(store, calls)
    runner.invoke(Log(), thread_id="t")
    before = store.history("t")
    with pytest.raises(ConflictError) as info:
        runner.resume("t", from_step=1)
    assert info.value.thread_id == "t"
    assert info.value.latest == 3
    # The message says what to do: not "another runner", which is not what happened.
    assert "to continue from step 1, pass as_thread=" in str(info.value)
    assert store.history("t") == before
    assert len(calls) == 3
    assert [t.thread_id for t in store.threads()] == ["t"]


def test_resume_from_an_older_step_as_a_new_thread(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = counting_loop(store, calls)
    runner.invoke(Log(), thread_id="t")
    before = store.history("t")
    result = runner.resume("t", from_step=1, as_thread="t2", metadata={"why": "retry"})
    assert result.thread_id == "t2"
    assert result.state.lines == ("a@0", "a@1", "a@2")
    assert len(calls) == 3 + 2
    forked = list(reversed(store.history("t2")))
    assert [cp.step for cp in forked] == [1, 2, 3]
    assert forked[0].parent == ParentRef(thread_id="t", step=1)
    assert forked[0].state == before[-2].state
    assert [cp.parent for cp in forked[1:]] == [None, None]
    assert all(cp.metadata == {"why": "retry"} for cp in forked)
    assert store.history("t") == before


def test_as_thread_without_from_step_is_refused(store: InMemoryCheckpointer[Log]) -> None:
    runner = counting_loop(store, [])
    runner.invoke(Log(), thread_id="t")
    with pytest.raises(GraphError, match="from_step"):
        runner.resume("t", as_thread="t2")


def test_invoke_with_an_existing_thread_id_conflicts_and_stores_nothing(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    runner = counting_loop(store, calls)
    runner.invoke(Log(), thread_id="t")
    before = store.history("t")
    with pytest.raises(ConflictError) as info:
        runner.invoke(Log(lines=("other",)), thread_id="t")
    assert (info.value.thread_id, info.value.step, info.value.latest) == ("t", 0, 3)
    assert "used by an earlier run, or another runner is writing it" in str(info.value)
    assert store.history("t") == before
    assert len(calls) == 3


def test_stream_with_an_existing_thread_id_conflicts_before_yielding(
    store: InMemoryCheckpointer[Log],
) -> None:
    runner = counting_loop(store, [])
    runner.invoke(Log(), thread_id="t")
    stream = runner.stream(Log(), thread_id="t")
    with pytest.raises(ConflictError):
        next(stream)
    assert store.load("t").step == 3


def test_fork_into_a_taken_thread_id_says_so(store: InMemoryCheckpointer[Log]) -> None:
    runner = counting_loop(store, [])
    runner.invoke(Log(), thread_id="t")
    runner.invoke(Log(), thread_id="u")
    with pytest.raises(ConflictError) as info:
        runner.fork("t", 1, "u")
    assert (info.value.thread_id, info.value.latest) == ("u", 3)
    assert "a fork needs a thread id of its own" in str(info.value)
    assert "another runner" not in str(info.value)


def test_fork_through_the_runner_records_the_parent(store: InMemoryCheckpointer[Log]) -> None:
    runner = counting_loop(store, [])
    runner.invoke(Log(), thread_id="t")
    forked = runner.fork("t", 1, "f", update=Note("edited"))
    assert forked.parent == ParentRef(thread_id="t", step=1)
    assert forked.state.lines == ("a@0", "edited")
    result = runner.resume("f")
    assert result.state.lines == ("a@0", "edited", "a@2")
    assert store.load("t").state.lines == ("a@0", "a@1", "a@2")
