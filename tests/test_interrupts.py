"""Interrupts: before and after named nodes, from inside a node, and resuming with an update."""

from __future__ import annotations

from typing import cast

import attrs
import pytest

from typedflow import (
    END,
    Completed,
    InMemoryCheckpointer,
    Interrupt,
    Interrupted,
    Node,
    Runner,
    StateSchema,
    UpdateTypeError,
)
from typedflow.checkpoint.base import RESUME_WRITER


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


def chain(
    store: InMemoryCheckpointer[Log],
    calls: list[str],
    *,
    before: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
) -> Runner[Log]:
    """a -> b -> c -> END."""
    return Runner(
        Log,
        nodes=[recorder(n, calls) for n in ("a", "b", "c")],
        entry="a",
        edges={"a": "b", "b": "c", "c": END},
        checkpointer=store,
        interrupt_before=before,
        interrupt_after=after,
    )


def test_interrupt_before_the_entry_node_stops_at_step_zero(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    runner = chain(store, calls, before=("a",))
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Interrupted)
    assert calls == []
    assert result.steps == 0
    assert result.reason == "before node 'a'"
    cp = result.checkpoint
    assert (cp.step, cp.status, cp.next, cp.state) == (0, "interrupted", ("a",), Log())
    assert not cp.done
    assert store.load("t") == cp

    done = runner.resume("t")
    assert isinstance(done, Completed)
    assert calls == ["a", "b", "c"]
    assert done.state.lines == ("a@0", "b@1", "c@2")
    assert [c.step for c in store.history("t")] == [3, 2, 1, 0]


def test_interrupt_before_a_later_node(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = chain(store, calls, before=("b",))
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Interrupted)
    assert calls == ["a"]
    assert result.reason == "before node 'b'"
    cp = result.checkpoint
    assert (cp.step, cp.status, cp.next) == (1, "interrupted", ("b",))
    # The step that queued b completed: its update is applied and recorded.
    assert cp.state.lines == ("a@0",)
    assert [w.node for w in cp.writes] == ["a"]

    done = runner.resume("t")
    assert isinstance(done, Completed)
    assert calls == ["a", "b", "c"]
    assert done.steps == 2
    assert done.state.lines == ("a@0", "b@1", "c@2")


def test_interrupt_after_a_node(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = chain(store, calls, after=("b",))
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Interrupted)
    assert calls == ["a", "b"]
    assert result.reason == "after node 'b'"
    cp = result.checkpoint
    assert (cp.step, cp.status, cp.next) == (2, "interrupted", ("c",))
    assert cp.state.lines == ("a@0", "b@1")

    done = runner.resume("t")
    assert isinstance(done, Completed)
    assert calls == ["a", "b", "c"]
    assert done.state.lines == ("a@0", "b@1", "c@2")


def test_interrupt_after_the_last_node_still_reports_the_interrupt(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    runner = chain(store, calls, after=("c",))
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Interrupted)
    assert result.checkpoint.next == ()
    assert not result.checkpoint.done
    done = runner.resume("t")
    assert isinstance(done, Completed)
    assert done.steps == 0
    assert calls == ["a", "b", "c"]
    # The run is finished now, and the stored thread says so.
    latest = store.load("t")
    assert latest.step == result.checkpoint.step + 1
    assert latest.done
    assert latest.writes == ()
    assert [t.done for t in store.threads()] == [True]


def test_an_interrupt_in_a_loop_stops_every_time(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = Runner(
        Log,
        nodes=[recorder("a", calls)],
        entry="a",
        routes={"a": lambda s: END if len(s.lines) >= 3 else "a"},
        checkpointer=store,
        interrupt_after=["a"],
    )
    result = runner.invoke(Log(), thread_id="t")
    stops = 0
    while isinstance(result, Interrupted):
        stops += 1
        result = runner.resume("t")
    assert stops == 3
    assert result.state.lines == ("a@0", "a@1", "a@2")
    assert calls == ["a", "a", "a"]


# ----- Interrupt returned by a node -------------------------------------------------------


def approval_graph(store: InMemoryCheckpointer[Log], calls: list[str]) -> Runner[Log]:
    """start -> [work, ask]; ``ask`` interrupts until the log holds "approved"."""

    @Log.node
    def ask(state: Log) -> Note | Interrupt:
        calls.append("ask")
        if "approved" not in state.lines:
            return Interrupt("need approval")
        return Note(f"ask@{len(state.lines)}")

    return Runner(
        Log,
        nodes=[recorder("start", calls), recorder("work", calls), ask, recorder("after", calls)],
        entry="start",
        edges={"start": ["work", "ask"], "work": "after", "ask": "after"},
        checkpointer=store,
    )


def test_a_node_interrupt_keeps_the_other_writes_pending(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = approval_graph(store, calls)
    result = runner.invoke(Log(), thread_id="t")
    assert isinstance(result, Interrupted)
    assert result.reason == "ask: need approval"
    cp = result.checkpoint
    assert cp.step == 2
    assert cp.status == "interrupted"
    # The step did not complete: the state is the one the step started from and the
    # whole step is queued again, with work's write kept aside.
    assert cp.state == store.load_at("t", 1).state
    assert cp.next == ("work", "ask")
    assert cp.writes == ()
    assert [(w.node, w.updates) for w in cp.pending] == [("work", (Note("work@1"),))]
    assert calls == ["start", "work", "ask"]


def test_resume_reruns_only_the_interrupting_node(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = approval_graph(store, calls)
    runner.invoke(Log(), thread_id="t")
    again = runner.resume("t")
    # Still not approved: ask interrupts again, work is not run again.
    assert isinstance(again, Interrupted)
    assert calls == ["start", "work", "ask", "ask"]
    assert again.checkpoint.step == 3
    assert [w.node for w in again.checkpoint.pending] == ["work"]

    done = runner.resume("t", update=Note("approved"))
    assert isinstance(done, Completed)
    assert calls == ["start", "work", "ask", "ask", "ask", "after"]
    # work's pending write was made against the step's original snapshot; ask ran
    # after the approval was applied.
    assert done.state.lines == ("start@0", "approved", "work@1", "ask@2", "after@4")


def test_a_resume_update_is_its_own_step_through_the_reducer(
    store: InMemoryCheckpointer[Log],
) -> None:
    calls: list[str] = []
    runner = chain(store, calls, before=("b",))
    runner.invoke(Log(), thread_id="t")
    done = runner.resume("t", update=Note("human"), metadata={"by": "reviewer"})
    assert isinstance(done, Completed)
    resumed = store.load_at("t", 2)
    assert [(w.node, w.updates) for w in resumed.writes] == [(RESUME_WRITER, (Note("human"),))]
    assert resumed.state.lines == ("a@0", "human")
    assert resumed.next == ("b",)
    assert resumed.status == "ok"
    assert resumed.metadata == {"by": "reviewer"}
    assert calls == ["a", "b", "c"]
    assert done.state.lines == ("a@0", "human", "b@2", "c@3")
    assert done.checkpoint.step == 4


def test_a_resume_update_of_the_wrong_type_is_refused(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = chain(store, calls, before=("b",))
    runner.invoke(Log(), thread_id="t")
    wrong = cast("Note", "not a note")  # cast: untyped callers may pass anything
    with pytest.raises(UpdateTypeError) as info:
        runner.resume("t", update=wrong)
    assert info.value.node == RESUME_WRITER
    assert info.value.thread_id == "t"
    assert store.load("t").step == 1
    assert calls == ["a"]


def test_results_are_distinguishable(store: InMemoryCheckpointer[Log]) -> None:
    calls: list[str] = []
    runner = chain(store, calls, before=("c",))

    def describe(result: Completed[Log] | Interrupted[Log]) -> str:
        match result:
            case Interrupted(reason=reason):
                return f"stopped: {reason}"
            case Completed(state=state):
                return f"done with {len(state.lines)} lines"

    first = runner.invoke(Log(), thread_id="t")
    assert describe(first) == "stopped: before node 'c'"
    assert not isinstance(first, Completed)
    second = runner.resume("t")
    assert describe(second) == "done with 3 lines"
    assert not isinstance(second, Interrupted)
