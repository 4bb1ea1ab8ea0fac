"""A realistic agent: plan, call two tools in parallel, ask a human, answer.

A scripted fake model stands in for an LLM (no network, deterministic). The
graph::

    plan ──► weather (async) ──┐
        └──► calendar ─────────┴─► review ──► answer ──► END

``plan`` fans out to both tools with ``Goto``; they run in the same step and
``review`` joins them. ``review`` stops the run with ``Interrupt`` until a
human approves the draft; the approval is a resume update that goes through
the reducer like any other. Run it with ``python -m examples.agent``.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import attrs

from typedflow import (
    END,
    UNSET,
    Checkpointer,
    Completed,
    Goto,
    InMemoryCheckpointer,
    Interrupt,
    Interrupted,
    Runner,
    StateSchema,
    Unset,
    field,
)
from typedflow.reducers import extend, merge_by_key

Role = Literal["user", "assistant", "tool"]
"""Who wrote a message: ``user``, ``assistant`` or ``tool``."""


@attrs.frozen
class Message:
    """One chat message; messages are kept by id (a later message with the same id replaces it)."""

    id: str
    """Unique within a thread."""
    role: Role
    """Who wrote it."""
    text: str
    """What it says."""


@attrs.frozen
class ToolCall:
    """A tool the model wants called."""

    tool: Literal["weather", "calendar"]
    """Which tool."""
    query: str
    """What to ask it."""


@attrs.frozen
class ToolResult:
    """What a tool answered."""

    tool: str
    """Which tool answered."""
    text: str
    """Its answer."""


@attrs.frozen
class AgentUpdate:
    """An update to the agent's state; unset fields change nothing."""

    messages: tuple[Message, ...] | Unset = UNSET
    """Upserted into the messages by id."""
    plan: tuple[ToolCall, ...] | Unset = UNSET
    """Replaces the plan."""
    results: tuple[ToolResult, ...] | Unset = UNSET
    """Appended to the tool results."""
    draft: str | Unset = UNSET
    """Replaces the draft answer."""
    approved: bool | Unset = UNSET
    """The human's decision on the draft."""
    answer: str | Unset = UNSET
    """The final answer."""


@attrs.frozen
class AgentState(StateSchema[AgentUpdate]):
    """The agent's state: the conversation, the plan, tool results and the answer."""

    question: str = ""
    """What the user asked."""
    messages: tuple[Message, ...] = field(default=(), reducer=merge_by_key(lambda m: m.id))
    """The conversation."""
    plan: tuple[ToolCall, ...] = ()
    """The tool calls the model asked for."""
    results: tuple[ToolResult, ...] = field(default=(), reducer=extend)
    """What the tools answered."""
    draft: str = ""
    """The answer waiting for approval."""
    approved: bool | None = None
    """The human's decision; None until they decide."""
    answer: str = ""
    """The final answer."""


class FakeModel:
    """A scripted stand-in for an LLM: the same question always gets the same plan and answer."""

    def plan(self, question: str) -> tuple[ToolCall, ...]:
        """Ask both tools about the place and day in the question."""
        return (ToolCall("weather", question), ToolCall("calendar", question))

    def answer(self, question: str, results: tuple[ToolResult, ...]) -> str:
        """Write an answer from the tool results."""
        facts = "; ".join(f"{r.tool}: {r.text}" for r in sorted(results, key=lambda r: r.tool))
        return f"About {question!r}: {facts}."


MODEL = FakeModel()


@AgentState.node
def plan(state: AgentState) -> Goto[AgentUpdate]:
    """Ask the model for a plan and fan out to the tools it picked, in parallel."""
    calls = MODEL.plan(state.question)
    return Goto(
        [call.tool for call in calls],
        update=AgentUpdate(
            messages=(
                Message("user-1", "user", state.question),
                Message("assistant-1", "assistant", f"Calling {len(calls)} tools."),
            ),
            plan=calls,
        ),
    )


@AgentState.node
async def weather(state: AgentState) -> AgentUpdate:
    """A weather service (async, as a network call would be)."""
    await asyncio.sleep(0)
    forecast = "sunny, 21°C" if "Lisbon" in state.question else "cloudy, 14°C"
    return AgentUpdate(
        results=(ToolResult("weather", forecast),),
        messages=(Message("tool-weather", "tool", forecast),),
    )


@AgentState.node
def calendar(state: AgentState) -> AgentUpdate:
    """A calendar lookup."""
    free = "free after 3 pm" if "Friday" in state.question else "busy all day"
    return AgentUpdate(
        results=(ToolResult("calendar", free),),
        messages=(Message("tool-calendar", "tool", free),),
    )


@AgentState.node
def review(state: AgentState) -> AgentUpdate | Interrupt:
    """Draft the answer and wait for a human to approve it; this node runs again on resume."""
    draft = MODEL.answer(state.question, state.results)
    if state.approved is None:
        return Interrupt(f"approve this answer? {draft}")
    return AgentUpdate(draft=draft)


@AgentState.node
def answer(state: AgentState) -> AgentUpdate:
    """Send the approved answer, or say it was withheld."""
    text = state.draft if state.approved else "The answer was not approved."
    return AgentUpdate(answer=text, messages=(Message("assistant-2", "assistant", text),))


def build_runner(checkpointer: Checkpointer[AgentState] | None = None) -> Runner[AgentState]:
    """The agent's graph, saving to ``checkpointer`` (in memory if None)."""
    return Runner(
        AgentState,
        nodes=[plan, weather, calendar, review, answer],
        entry="plan",
        edges={"weather": "review", "calendar": "review", "review": "answer", "answer": END},
        checkpointer=checkpointer if checkpointer is not None else InMemoryCheckpointer(AgentState),
    )


def run_thread(
    runner: Runner[AgentState], thread_id: str, question: str, *, approve: bool = True
) -> AgentState:
    """One whole conversation: run until the approval interrupt, decide, and finish."""
    first = runner.invoke(AgentState(question=question), thread_id=thread_id)
    if not isinstance(first, Interrupted):
        raise RuntimeError(f"expected the review to ask for approval, got {first!r}")
    done = runner.resume(thread_id, update=AgentUpdate(approved=approve))
    if not isinstance(done, Completed):
        raise RuntimeError(f"expected the run to finish after the decision, got {done!r}")
    return done.state


def main() -> None:
    """Ask one question, approve the answer, and print the conversation."""
    runner = build_runner()
    question = "Can we have lunch outside in Lisbon on Friday?"
    first = runner.invoke(AgentState(question=question), thread_id="lunch")
    if isinstance(first, Interrupted):
        print(f"interrupted at step {first.checkpoint.step}: {first.reason}")
        print("human: approved")
        done = runner.resume("lunch", update=AgentUpdate(approved=True))
    else:
        done = first
    assert isinstance(done, Completed)
    for message in done.state.messages:
        print(f"{message.role:>9}: {message.text}")
    print(f"answer after {done.checkpoint.step} steps: {done.state.answer}")


if __name__ == "__main__":
    main()
