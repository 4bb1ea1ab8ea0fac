"""Hypothesis strategies, in one place: values of the "everything" schema, checkpoints
holding them, and small random graphs for the runner properties.

Values with structure come from typed ``@composite`` functions; scalars from
typed module-level strategies. The property tests draw from these rather than
building their own.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeAlias, TypeVar

import attrs
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, SearchStrategy, composite

from tests.everything import (
    Cat,
    Dog,
    Everything,
    EverythingUpdate,
    Message,
    Mood,
    Pet,
    Point,
    Role,
    Shape,
)
from typedflow import (
    UNSET,
    Checkpoint,
    NodeFailure,
    NodeWrite,
    ParentRef,
    StepStatus,
    Unset,
)

__all__ = [
    "Disruption",
    "EdgeKind",
    "GraphSpec",
    "NodeSpec",
    "any_datetimes",
    "any_floats",
    "aware_datetimes",
    "checkpoints",
    "disruptions",
    "durations",
    "everything_states",
    "everything_updates",
    "fixed_offsets",
    "graph_specs",
    "int64s",
    "maybe_unset",
    "messages",
    "metadata",
    "metadata_values",
    "moods",
    "names",
    "node_failures",
    "node_specs",
    "node_writes",
    "parent_refs",
    "pets",
    "points",
    "shapes",
    "statuses",
]

T = TypeVar("T")
"""Any value drawn by a strategy."""

# -- scalars -----------------------------------------------------------------------------------

int64s: SearchStrategy[int] = st.integers(min_value=-(2**63), max_value=2**63 - 1)
"""Whole numbers in the range every backend stores (DuckDB's BIGINT)."""

any_floats: SearchStrategy[float] = st.floats()
"""Every float: nan, both infinities and -0.0 included (compare with ``exactly_equal``)."""

fixed_offsets: SearchStrategy[timezone] = st.integers(
    min_value=-(24 * 60 - 1), max_value=24 * 60 - 1
).map(lambda minutes: timezone(timedelta(minutes=minutes)))
"""Fixed UTC offsets, whole minutes, from -23:59 to +23:59 (UTC itself included)."""

aware_datetimes: SearchStrategy[datetime] = st.datetimes(timezones=fixed_offsets)
"""Timezone-aware datetimes with any fixed offset."""

any_datetimes: SearchStrategy[datetime] = st.datetimes(timezones=st.none() | fixed_offsets)
"""Datetimes, naive or timezone-aware."""

names: SearchStrategy[str] = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4)
"""Short identifiers (node names, message ids), so that draws collide often."""


def maybe_unset(values: SearchStrategy[T]) -> SearchStrategy[T | Unset]:
    """An update field's values: UNSET ("no change") or a value."""
    return st.one_of(st.just(UNSET), values)


# -- the everything schema ---------------------------------------------------------------------


@composite
def points(draw: DrawFn) -> Point:
    """A :class:`Point` with any float."""
    return Point(draw(int64s), draw(any_floats))


@composite
def messages(draw: DrawFn, ids: SearchStrategy[str] = names) -> Message:
    """A :class:`Message` with any text and an optional datetime."""
    return Message(
        id=draw(ids),
        role=draw(st.sampled_from(Role)),
        text=draw(st.text()),
        at=draw(st.none() | any_datetimes),
    )


@composite
def shapes(draw: DrawFn) -> Shape:
    """A :class:`Shape`: nested attrs classes in a tuple and an Optional."""
    return Shape(
        name=draw(st.text()),
        corners=tuple(draw(st.lists(points(), max_size=3))),
        origin=draw(st.none() | points()),
    )


@composite
def pets(draw: DrawFn) -> Pet:
    """A :class:`Cat` or a :class:`Dog`, often of the same name (only the tag tells them apart)."""
    name = draw(st.text(max_size=3))
    if draw(st.booleans()):
        return Cat(name, draw(int64s))
    return Dog(name, draw(st.booleans()))


moods: SearchStrategy[Mood] = st.sampled_from(["calm", "busy", "away"])
"""Every value of :data:`Mood`."""


@composite
def everything_states(draw: DrawFn, min_messages: int = 0) -> Everything:
    """An :class:`Everything` with every field drawn from its whole range.

    Args:
        draw: Supplied by hypothesis.
        min_messages: The fewest messages the state holds (ids are unique, as
            ``merge_by_key`` keeps them).
    """
    msgs = draw(
        st.lists(
            messages(), min_size=min_messages, max_size=min_messages + 4, unique_by=lambda m: m.id
        )
    )
    return Everything(
        count=draw(int64s),
        total=draw(any_floats),
        ratio=draw(any_floats),
        name=draw(st.text()),
        flag=draw(st.booleans()),
        blob=draw(st.binary(max_size=16)),
        when=draw(any_datetimes),
        day=draw(st.dates()),
        maybe=draw(st.none() | int64s),
        log=tuple(draw(st.lists(st.text(), max_size=4))),
        history=tuple(draw(st.lists(int64s, max_size=4))),
        pair=(draw(int64s), draw(st.text())),
        points=draw(st.lists(points(), max_size=3)),
        tags=draw(st.frozensets(st.text(), max_size=4)),
        scores=draw(st.dictionaries(st.text(), int64s, max_size=4)),
        messages=tuple(msgs),
        shape=draw(shapes()),
        mood=draw(moods),
        role=draw(st.sampled_from(Role)),
        pet=draw(pets()),
        friend=draw(st.none() | pets()),
        stamps=tuple(draw(st.lists(any_datetimes, max_size=3))),
    )


@composite
def everything_updates(draw: DrawFn) -> EverythingUpdate:
    """An :class:`EverythingUpdate` with each field UNSET or any value of its type."""
    return EverythingUpdate(
        count=draw(maybe_unset(int64s)),
        total=draw(maybe_unset(any_floats)),
        ratio=draw(maybe_unset(any_floats)),
        name=draw(maybe_unset(st.text())),
        flag=draw(maybe_unset(st.booleans())),
        blob=draw(maybe_unset(st.binary(max_size=16))),
        when=draw(maybe_unset(any_datetimes)),
        day=draw(maybe_unset(st.dates())),
        maybe=draw(maybe_unset(st.none() | int64s)),
        log=draw(maybe_unset(st.text())),
        history=draw(maybe_unset(st.lists(int64s, max_size=4).map(tuple))),
        pair=draw(maybe_unset(st.tuples(int64s, st.text()))),
        points=draw(maybe_unset(st.lists(points(), max_size=3))),
        tags=draw(maybe_unset(st.frozensets(st.text(), max_size=4))),
        scores=draw(maybe_unset(st.dictionaries(st.text(), int64s, max_size=4))),
        messages=draw(maybe_unset(st.lists(messages(), max_size=3).map(tuple))),
        shape=draw(maybe_unset(shapes())),
        mood=draw(maybe_unset(moods)),
        role=draw(maybe_unset(st.sampled_from(Role))),
        pet=draw(maybe_unset(pets())),
        friend=draw(maybe_unset(st.none() | pets())),
        stamps=draw(maybe_unset(st.lists(any_datetimes, max_size=3).map(tuple))),
    )


# -- checkpoints ---------------------------------------------------------------------------------

durations: SearchStrategy[float] = st.floats(min_value=0.0, max_value=1e6)
"""Wall times in seconds."""

statuses: SearchStrategy[StepStatus] = st.sampled_from(["ok", "interrupted", "error"])
"""Every :data:`~typedflow.StepStatus`."""


@composite
def node_writes(draw: DrawFn) -> NodeWrite[EverythingUpdate]:
    """What a node wrote: several updates, maybe a ``Goto``'s targets."""
    return NodeWrite(
        node=draw(names),
        updates=tuple(draw(st.lists(everything_updates(), max_size=3))),
        goto=draw(st.none() | st.lists(names, max_size=3).map(tuple)),
        duration=draw(durations),
    )


@composite
def node_failures(draw: DrawFn) -> NodeFailure:
    """A failure record with any message text."""
    return NodeFailure(
        node=draw(names),
        error_type=draw(st.text()),
        message=draw(st.text()),
        duration=draw(st.none() | durations),
    )


@composite
def parent_refs(draw: DrawFn) -> ParentRef:
    """Where a fork came from."""
    return ParentRef(thread_id=draw(st.text(min_size=1)), step=draw(st.integers(min_value=0)))


metadata_values: SearchStrategy[str | int | float | bool | None] = st.one_of(
    st.text(), int64s, st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()
)
"""JSON scalars, the values run metadata may hold."""


@composite
def metadata(draw: DrawFn) -> dict[str, str | int | float | bool | None]:
    """Run metadata: any keys, JSON scalar values."""
    return draw(st.dictionaries(st.text(), metadata_values, max_size=4))


@composite
def checkpoints(draw: DrawFn) -> Checkpoint[Everything]:
    """A checkpoint with every field drawn: writes, pending, failures, a parent and metadata."""
    return Checkpoint(
        thread_id=draw(st.text(min_size=1)),
        step=draw(st.integers(min_value=0, max_value=2**31)),
        state=draw(everything_states()),
        next=tuple(draw(st.lists(names, max_size=3))),
        status=draw(statuses),
        writes=tuple(draw(st.lists(node_writes(), max_size=3))),
        pending=tuple(draw(st.lists(node_writes(), max_size=2))),
        failures=tuple(draw(st.lists(node_failures(), max_size=2))),
        reason=draw(st.none() | st.text()),
        duration=draw(durations),
        created_at=draw(aware_datetimes),
        parent=draw(st.none() | parent_refs()),
        metadata=draw(metadata()),
    )


# -- random graphs -------------------------------------------------------------------------------

EdgeKind: TypeAlias = Literal["edge", "route", "goto"]
"""How a node of a random graph chooses its successors:

- ``edge``: static edges, only to later nodes (so chains of edges end);
- ``route``: a conditional route over the state, to any nodes, END once the budget is spent;
- ``goto``: the node returns ``Goto`` to nodes chosen from the state, END once the budget is spent.
"""


@attrs.frozen
class NodeSpec:
    """One node of a random graph."""

    kind: EdgeKind
    """How it picks its successors."""
    targets: tuple[int, ...]
    """The nodes it may go to (indexes into the graph's nodes)."""
    fan_out: int
    """How many of ``targets`` a route or Goto picks at once (a parallel step when > 1)."""
    updates: int
    """How many updates the node returns per run (1 or more)."""
    is_async: bool
    """Whether the node is an ``async def``."""
    salt: int
    """Mixed into its updates so that nodes write different values."""


@attrs.frozen
class GraphSpec:
    """A random graph: nodes ``n0``, ``n1``, ... and where each goes; it always terminates."""

    nodes: tuple[NodeSpec, ...]
    """The nodes, in index order."""
    entry: tuple[int, ...]
    """The nodes of the first step."""
    budget: int
    """Routes and Gotos end once the state's log holds this many entries."""


@composite
def node_specs(draw: DrawFn, index: int, count: int) -> NodeSpec:
    """Node ``index`` of a graph of ``count`` nodes; static edges point only forward."""
    later = tuple(range(index + 1, count))
    kind: EdgeKind = draw(
        st.sampled_from(["edge", "route", "goto"] if later else ["route", "goto"])
    )
    pool = later if kind == "edge" else tuple(range(count))
    targets = tuple(
        draw(st.lists(st.sampled_from(pool), min_size=0 if kind == "edge" else 1, max_size=3))
    )
    return NodeSpec(
        kind=kind,
        targets=targets,
        fan_out=draw(st.integers(min_value=1, max_value=max(1, len(targets)))),
        updates=draw(st.integers(min_value=1, max_value=2)),
        is_async=draw(st.booleans()),
        salt=draw(st.integers(min_value=1, max_value=1000)),
    )


@composite
def graph_specs(draw: DrawFn, max_nodes: int = 5) -> GraphSpec:
    """A random graph of 2..``max_nodes`` nodes with edges, routes, Gotos and fan-out."""
    count = draw(st.integers(min_value=2, max_value=max_nodes))
    nodes = tuple(draw(node_specs(i, count)) for i in range(count))
    entry = tuple(
        draw(
            st.lists(
                st.integers(min_value=0, max_value=count - 1), min_size=1, max_size=2, unique=True
            )
        )
    )
    return GraphSpec(nodes=nodes, entry=entry, budget=draw(st.integers(min_value=1, max_value=12)))


@attrs.frozen
class Disruption:
    """Ways to stop a run of a random graph part-way, all applied to the same run."""

    interrupt_before: frozenset[int]
    """Nodes (indexes) to interrupt before."""
    interrupt_after: frozenset[int]
    """Nodes (indexes) to interrupt after."""
    fail_calls: frozenset[int]
    """Node calls (counted from 1 over the whole run) that raise, once each."""
    interrupt_calls: frozenset[int]
    """Node calls that return ``Interrupt``, once each (the node runs again on resume)."""
    step_limits: tuple[int, ...]
    """The step limit of the first call and of each resume, in turn (repeating)."""
    use_async: bool
    """Drive the run with ``ainvoke``/``aresume`` instead of ``invoke``/``resume``."""


@composite
def disruptions(draw: DrawFn, max_nodes: int = 5) -> Disruption:
    """Interrupts, one-off failures and small step limits, for graphs of up to ``max_nodes``
    nodes (node indexes a graph does not have are ignored)."""
    nodes = st.frozensets(st.integers(min_value=0, max_value=max_nodes - 1), max_size=2)
    calls = st.frozensets(st.integers(min_value=1, max_value=25), max_size=3)
    limit = st.integers(min_value=1, max_value=4) | st.just(1000)
    return Disruption(
        interrupt_before=draw(nodes),
        interrupt_after=draw(nodes),
        fail_calls=draw(calls),
        interrupt_calls=draw(calls),
        step_limits=tuple(draw(st.lists(limit, min_size=1, max_size=3))),
        use_async=draw(st.booleans()),
    )
