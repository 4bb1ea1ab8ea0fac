"""Must pass mypy: ``@Schema.node`` accepts every node shape and gives a ``Node`` of that schema."""

from __future__ import annotations

from typing import assert_type

from tests.typing.pass_schemas import Counter, Inc, Reset, Tally
from typedflow import END, Goto, Interrupt, Node


@Counter.node
def inc(state: Counter) -> Inc:
    """Returns one update."""
    return Inc()


@Counter.node
async def ainc(state: Counter) -> Inc:
    """An async node returning one update."""
    return Inc(2)


@Counter.node
def inc_twice(state: Counter) -> list[Inc]:
    """Returns several updates, applied in order."""
    return [Inc(), Inc()]


@Counter.node
def review(state: Counter) -> None:
    """Returns nothing: no change."""


@Counter.node
def maybe_inc(state: Counter) -> Inc | None:
    """Returns an update or nothing."""
    return Inc() if state.n < 10 else None


@Counter.node
def jump(state: Counter) -> Goto[Inc]:
    """Routes itself, with an update."""
    return Goto(END, update=Inc(5))


@Counter.node
def stop(state: Counter) -> Interrupt:
    """Stops the run for a human."""
    return Interrupt("needs a human")


@Counter.node
async def ask(state: Counter) -> Inc | Interrupt:
    """An async node that may interrupt."""
    return Interrupt("check the count") if state.n == 0 else Inc()


@Counter.node(name="bump")
def bump_fn(state: Counter) -> Inc:
    """The named form: the node is called ``bump``."""
    return Inc(3)


@Counter.node(name="abump")
async def abump_fn(state: Counter) -> Goto[Inc]:
    """The named form on an async node."""
    return Goto(["inc", "bump"], update=[Inc(), Inc()])


assert_type(inc, Node[Counter])
assert_type(ainc, Node[Counter])
assert_type(inc_twice, Node[Counter])
assert_type(review, Node[Counter])
assert_type(maybe_inc, Node[Counter])
assert_type(jump, Node[Counter])
assert_type(stop, Node[Counter])
assert_type(ask, Node[Counter])
assert_type(bump_fn, Node[Counter])
assert_type(abump_fn, Node[Counter])
assert_type(inc.schema, type[Counter])
assert_type(inc.name, str)


# A union update type: nodes may return either member, or a mix.
@Tally.node
def add_one(state: Tally) -> Inc:
    """Returns one member of the union."""
    return Inc()


@Tally.node
def restart(state: Tally) -> Reset:
    """Returns the other member of the union."""
    return Reset()


@Tally.node
def mixed(state: Tally) -> tuple[Inc | Reset, ...]:
    """Returns both kinds, in order."""
    return (Reset(10), Inc())


@Tally.node
async def restart_then_end(state: Tally) -> Goto[Reset]:
    """``Goto`` is covariant: a ``Goto[Reset]`` is a ``Goto[Inc | Reset]``."""
    return Goto(END, update=Reset(1))


assert_type(add_one, Node[Tally])
assert_type(restart, Node[Tally])
assert_type(mixed, Node[Tally])
assert_type(restart_then_end, Node[Tally])


def check_nodes() -> None:
    """The decorator's run-time result matches its type: names, schemas, sync or async."""
    assert [n.name for n in (inc, bump_fn, abump_fn)] == ["inc", "bump", "abump"]
    assert all(n.schema is Counter for n in (inc, ainc, jump, stop, bump_fn))
    assert (inc.is_async, ainc.is_async, abump_fn.is_async) == (False, True, True)
    assert restart.schema is Tally
