"""Must fail mypy: nodes whose result is not of their schema's update type.

mypy reports a wrong node where ``@Schema.node`` is applied, so the mark sits on the
decorator line.
"""

from __future__ import annotations

from tests.typing.pass_schemas import Counter, Inc, Other, Reset, Tally
from typedflow import END, Goto, Node


@Other.node
def other_node(state: Other) -> Reset:
    return Reset()


@Counter.node  # type: ignore[arg-type]  # Counter's update type is Inc, not Reset
def returns_reset(state: Counter) -> Reset:
    return Reset()


@Counter.node  # type: ignore[arg-type]  # an async node's result is checked the same way
async def async_returns_str(state: Counter) -> str:
    return "done"


@Counter.node  # type: ignore[arg-type]  # every update of a list must be an Inc
def returns_mixed_list(state: Counter) -> list[Inc | Reset]:
    return [Inc(), Reset()]


@Counter.node  # type: ignore[arg-type]  # a Goto carries updates of the update type
def goes_with_reset(state: Counter) -> Goto[Reset]:
    return Goto(END, update=Reset())


@Counter.node(name="named")  # type: ignore[arg-type]  # the named form checks the result too
def named_returns_reset(state: Counter) -> Reset:
    return Reset()


@Counter.node(name="async_named")  # type: ignore[arg-type]  # and so does it on an async node
async def async_named_returns_resets(state: Counter) -> list[Reset]:
    return [Reset()]


@Counter.node  # type: ignore[arg-type]  # a Counter node reads a Counter, not an Other
def reads_other(state: Other) -> Inc:
    return Inc()


@Tally.node  # type: ignore[arg-type]  # a union update type still rejects a non-member
def tally_returns_str(state: Tally) -> str:
    return "done"


def goto_payload(state: Counter) -> Goto[Inc]:
    return Goto(END, update=Reset())  # type: ignore[arg-type]  # a Goto[Inc] carries an Inc


def goto_payloads(state: Counter) -> Goto[Inc]:
    return Goto(END, update=[Inc(), Reset()])  # type: ignore[list-item]  # each update an Inc


def as_counter_node() -> Node[Counter]:
    return other_node  # type: ignore[return-value]  # a node of Other is no node of Counter
