"""Quickstart: a typed state, two nodes, a conditional route, and the saved history.

The state derives its reducer from per-field reducers: ``n`` adds, ``log``
appends. Run it with ``python -m examples.quickstart``.
"""

from __future__ import annotations

import attrs

from typedflow import END, UNSET, Completed, InMemoryCheckpointer, Runner, StateSchema, Unset, field
from typedflow.reducers import add, append


@attrs.frozen
class Step:
    """An update: how much to add to ``n``, and a line for the log."""

    n: int | Unset = UNSET
    """Added to the counter."""
    log: str | Unset = UNSET
    """Appended to the log."""


@attrs.frozen
class Counter(StateSchema[Step]):
    """A counter and a log of what happened."""

    n: int = field(default=0, reducer=add)
    """The counter."""
    log: tuple[str, ...] = field(default=(), reducer=append)
    """One line per update."""


@Counter.node
def double_or_add(state: Counter) -> Step:
    """Double small numbers, then add three at a time."""
    by = state.n if 0 < state.n < 10 else 3
    return Step(n=by, log=f"{state.n} + {by}")


@Counter.node
def report(state: Counter) -> Step:
    """Write the final line."""
    return Step(log=f"done at {state.n}")


def next_node(state: Counter) -> str:
    """Keep counting until 20, then report."""
    return "report" if state.n >= 20 else "double_or_add"


def build_runner(checkpointer: InMemoryCheckpointer[Counter]) -> Runner[Counter]:
    """The graph: count until 20, then report and end."""
    return Runner(
        Counter,
        nodes=[double_or_add, report],
        entry="double_or_add",
        routes={"double_or_add": next_node},
        edges={"report": END},
        checkpointer=checkpointer,
    )


def main() -> None:
    """Run one thread and print its result and history."""
    checkpointer = InMemoryCheckpointer(Counter)
    runner = build_runner(checkpointer)
    result = runner.invoke(Counter(n=1), thread_id="quickstart")
    assert isinstance(result, Completed)
    print(f"final n = {result.state.n} after {result.steps} steps")
    for checkpoint in reversed(checkpointer.history("quickstart")):
        ran = ", ".join(w.node for w in checkpoint.writes) or "(input)"
        n, pending = checkpoint.state.n, list(checkpoint.next)
        print(f"step {checkpoint.step}: ran {ran:<14} n = {n:<3} next = {pending}")
    print("log:", " | ".join(result.state.log))


if __name__ == "__main__":
    main()
