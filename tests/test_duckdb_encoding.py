"""DuckDB backend: the fast way of encoding a checkpoint (fields whose values typedflow's own
converter dumps as they are skip the converter) gives exactly the rows of the general way (a
converter of the user's, which every field goes through), and refuses the same bad values
naming the same path."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from typedflow import (
    UNSET,
    Checkpoint,
    NodeWrite,
    SerializationError,
    StateSchema,
    Unset,
)
from typedflow._serde import make_converter
from typedflow.checkpoint import duckdb as backend
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


class Level(enum.IntEnum):
    """An int enum: a value of it is an int, which the converter dumps as its value."""

    LOW = 1
    HIGH = 2


class Tag(enum.StrEnum):
    """A str enum: a value of it is a str, which the converter dumps as its value."""

    A = "a"


class Name(str):
    """A str subclass."""


@attrs.frozen
class Note:
    """A nested class: a field of it goes through the converter."""

    text: str
    """Any text."""


@attrs.frozen
class Edit:
    """An update whose every field the converter dumps as it is."""

    count: int | Unset = UNSET
    """An int."""
    label: str | Unset | None = UNSET
    """A str or None."""
    ratio: float | Unset = UNSET
    """A float."""
    on: bool | Unset = UNSET
    """A bool."""
    words: tuple[str, ...] | Unset = UNSET
    """A tuple of str."""


@attrs.frozen
class Plain(StateSchema[Edit]):
    """A state whose every field the converter dumps as it is."""

    count: int = 0
    """BIGINT."""
    label: str | None = None
    """VARCHAR, or NULL."""
    ratio: float = 0.0
    """DOUBLE."""
    on: bool = False
    """BOOLEAN."""
    maybe: int | None = None
    """BIGINT, or NULL."""
    words: tuple[str, ...] = ()
    """VARCHAR[], stored as deltas."""
    nums: list[int] = attrs.field(factory=list)
    """BIGINT[], stored as deltas."""
    marks: tuple[float | None, ...] = ()
    """DOUBLE[], stored as deltas."""
    flags: tuple[bool, ...] | None = None
    """BOOLEAN[], or NULL (not stored as deltas)."""

    def apply(self, update: Edit) -> Plain:
        return self


@attrs.frozen
class MixedEdit:
    """An update with a field the converter has to dump."""

    count: int | Unset = UNSET
    """An int."""
    note: Note | Unset = UNSET
    """A nested class."""


@attrs.frozen
class Mixed(StateSchema[MixedEdit]):
    """A state with fields of both kinds."""

    count: int = 0
    """BIGINT."""
    when: datetime = T0
    """TIMESTAMPTZ: through the converter."""
    note: Note = Note("")
    """STRUCT: through the converter."""
    words: tuple[str, ...] = ()
    """VARCHAR[], stored as deltas."""
    notes: tuple[Note, ...] = ()
    """STRUCT[], stored as deltas, through the converter."""
    tags: frozenset[str] = frozenset()
    """VARCHAR[]: through the converter."""

    def apply(self, update: MixedEdit) -> Mixed:
        return self


def pair(schema: type[Any]) -> tuple[DuckDBCheckpointer[Any], DuckDBCheckpointer[Any]]:
    """A checkpointer encoding the fast way, and one encoding every field the general way
    (given a converter, which may hold hooks of the user's, it never skips it)."""
    return DuckDBCheckpointer(schema), DuckDBCheckpointer(schema, converter=make_converter())


def test_the_fast_way_is_taken_only_with_typedflows_own_converter() -> None:
    fast, general = pair(Plain)
    with fast, general:
        assert all(encode is not None for _, encode in fast._state_plan + fast._grow_plan)
        assert fast._update_plan is not None
        assert all(encode is None for _, encode in general._state_plan + general._grow_plan)
        assert general._update_plan is None
    with DuckDBCheckpointer(Mixed) as mixed:
        plans = dict(mixed._state_plan + mixed._grow_plan)
        assert {n for n, encode in plans.items() if encode is not None} == {"count", "words"}
        assert mixed._update_plan is None


# Values of each field's type, and values of neighbouring types: some the general way stores
# too (an int enum for an int, a list for a tuple), some it refuses (with a path to name).
ints = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(),
    st.booleans(),
    st.sampled_from([Level.LOW, Level.HIGH]),
    st.floats(allow_nan=False, width=16),
    st.just("1"),
)
texts = st.one_of(
    st.text(max_size=5),
    st.text(max_size=3).map(Name),
    st.just(Tag.A),
    st.integers(0, 9),
    st.none(),
)
floats = st.one_of(st.floats(), st.integers(-(2**80), 2**80), st.booleans(), st.just("x"))
bools = st.one_of(st.booleans(), st.integers(0, 1), st.none())


def sequences(items: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Tuples and lists of ``items``, and now and then something that is neither."""
    return st.one_of(
        st.lists(items, max_size=4).map(tuple),
        st.lists(items, max_size=4),
        st.just("ab"),
        st.just(3),
    )


def good_or_bad(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Mostly values of the field's type, so that most checkpoints are stored."""
    return st.one_of(good, good, good, odd)


plain_states = st.fixed_dictionaries(
    {
        "count": good_or_bad(st.integers(-(2**63), 2**63 - 1), ints),
        "label": good_or_bad(st.none() | st.text(max_size=5), texts),
        "ratio": good_or_bad(st.floats(), floats),
        "on": good_or_bad(st.booleans(), bools),
        "maybe": good_or_bad(st.none() | st.integers(-5, 5), ints | st.none()),
        "words": good_or_bad(
            st.lists(st.text(max_size=3), max_size=3).map(tuple), sequences(texts)
        ),
        "nums": good_or_bad(st.lists(st.integers(-5, 5), max_size=3), sequences(ints)),
        "marks": good_or_bad(
            st.lists(st.none() | st.floats(), max_size=3).map(tuple), sequences(floats)
        ),
        "flags": good_or_bad(
            st.none() | st.lists(st.booleans(), max_size=3).map(tuple), sequences(bools)
        ),
    }
)

edits = st.fixed_dictionaries(
    {},
    optional={
        "count": good_or_bad(st.integers(-(2**63), 2**63 - 1), ints),
        "label": good_or_bad(st.none() | st.text(max_size=5), texts),
        "ratio": good_or_bad(st.floats(), floats),
        "on": good_or_bad(st.booleans(), bools),
        "words": good_or_bad(
            st.lists(st.text(max_size=3), max_size=3).map(tuple), sequences(texts)
        ),
    },
)

mixed_states = st.fixed_dictionaries(
    {
        "count": good_or_bad(st.integers(-(2**63), 2**63 - 1), ints),
        "when": st.just(T0),
        "note": st.builds(Note, texts),
        "words": good_or_bad(
            st.lists(st.text(max_size=3), max_size=3).map(tuple), sequences(texts)
        ),
        "notes": st.lists(st.builds(Note, st.text(max_size=3)), max_size=2).map(tuple),
        "tags": st.frozensets(st.text(max_size=2), max_size=2),
    }
)

mixed_edits = st.fixed_dictionaries(
    {}, optional={"count": ints, "note": st.builds(Note, st.text(max_size=3))}
)


def outcome(cp: DuckDBCheckpointer[Any], c: Checkpoint[Any]) -> tuple[str, ...]:
    """What saving ``c`` makes: the JSON texts of its rows, or the refusal and its path."""
    try:
        ticket = cp._ticket(c)
    except SerializationError as exc:
        return ("refused", exc.path, str(exc))
    if ticket.new_tail is not None:
        cp._tails[c.thread_id] = ticket.new_tail  # as a commit would
    return (
        "stored",
        json.dumps(ticket.fixed, ensure_ascii=False),
        json.dumps(ticket.updates, ensure_ascii=False),
        str(ticket.payload),
    )


def checkpoints(
    schema: type[Any],
    update: type[Any],
    states: list[dict[str, Any]],
    updates: list[list[dict[str, Any]]],
) -> Iterator[Checkpoint[Any]]:
    """One checkpoint per state, each step's write holding its updates."""
    for step, (state, ups) in enumerate(zip(states, updates, strict=True)):
        writes = (NodeWrite(node="n", updates=tuple(update(**u) for u in ups)),) if step else ()
        yield Checkpoint(
            thread_id="t",
            step=step,
            state=schema(**state),
            next=("n",),
            writes=writes,
            created_at=T0,
        )


def grown(states: list[dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The states, each of whose growable fields starts as the previous state's (a delta),
    where both are sequences."""
    out = [states[0]]
    for state in states[1:]:
        state = dict(state)
        for name in names:
            prev, new = out[-1][name], state[name]
            if isinstance(prev, tuple | list) and isinstance(new, tuple | list):
                state[name] = type(new)([*prev, *new])
        out.append(state)
    return out


Pairs = dict[type[Any], tuple[DuckDBCheckpointer[Any], DuckDBCheckpointer[Any]]]


@pytest.fixture(scope="module")
def pairs() -> Iterator[Pairs]:
    """A :func:`pair` per schema, shared by the examples (which only encode)."""
    made = {schema: pair(schema) for schema in (Plain, Mixed)}
    yield made
    for fast, general in made.values():
        fast.close()
        general.close()


def same_outcomes(
    pairs: Pairs,
    schema: type[Any],
    update: type[Any],
    states: list[dict[str, Any]],
    updates: list[list[dict[str, Any]]],
) -> None:
    fast, general = pairs[schema]
    fast._tails.clear()
    general._tails.clear()
    for a, b in zip(
        checkpoints(schema, update, states, updates),
        checkpoints(schema, update, states, updates),
        strict=True,
    ):
        assert outcome(fast, a) == outcome(general, b)


@settings(max_examples=300, deadline=None)
@given(
    states=st.lists(plain_states, min_size=1, max_size=4),
    updates=st.lists(st.lists(edits, max_size=2), min_size=4, max_size=4),
    grow=st.booleans(),
)
def test_the_fast_way_gives_the_general_ways_rows(
    pairs: Pairs, states: list[dict[str, Any]], updates: list[list[dict[str, Any]]], grow: bool
) -> None:
    if grow:
        states = grown(states, ("words", "nums", "marks"))
    same_outcomes(pairs, Plain, Edit, states, updates[: len(states)])


@settings(max_examples=100, deadline=None)
@given(
    states=st.lists(mixed_states, min_size=1, max_size=4),
    updates=st.lists(st.lists(mixed_edits, max_size=2), min_size=4, max_size=4),
    grow=st.booleans(),
)
def test_the_fast_way_gives_the_general_ways_rows_beside_other_fields(
    pairs: Pairs, states: list[dict[str, Any]], updates: list[list[dict[str, Any]]], grow: bool
) -> None:
    if grow:
        states = grown(states, ("words", "notes"))
    same_outcomes(pairs, Mixed, MixedEdit, states, updates[: len(states)])


BAD: list[tuple[dict[str, Any], list[dict[str, Any]], str]] = [
    ({"count": 2**64}, [], "state.count"),
    ({"count": 1.5}, [], "state.count"),
    ({"label": 3}, [], "state.label"),
    ({"ratio": "x"}, [], "state.ratio"),
    ({"ratio": 2**1100}, [], "state.ratio"),
    ({"on": 1}, [], "state.on"),
    ({"words": ("a", "b", "c", 4)}, [], "state.words[3]"),
    ({"nums": [1, 2**70]}, [], "state.nums[1]"),
    ({"marks": (None, "x")}, [], "state.marks[1]"),
    ({"flags": (True, 0)}, [], "state.flags[1]"),
    ({}, [{"count": 1}, {"words": ("a", 5)}], "writes[0].updates[1].words[1]"),
    ({}, [{"label": 2}], "writes[0].updates[0].label"),
]


@pytest.mark.parametrize(("state", "ups", "path"), BAD)
@pytest.mark.parametrize("way", ["fast", "general"])
def test_a_bad_value_is_refused_naming_its_path(
    state: dict[str, Any], ups: list[dict[str, Any]], path: str, way: str
) -> None:
    fast, general = pair(Plain)
    with fast, general:
        cp = fast if way == "fast" else general
        # Step 1 follows a step 0 of three words: a growable field is stored as a delta, and
        # the path counts the items of its whole value.
        cp.save(Checkpoint(thread_id="t", step=0, state=Plain(words=("a", "b", "c")), next=()))
        bad = Checkpoint(
            thread_id="t",
            step=1,
            state=Plain(**{"words": ("a", "b", "c"), **state}),
            next=(),
            writes=(NodeWrite(node="n", updates=tuple(Edit(**u) for u in ups)),),
        )
        with pytest.raises(SerializationError) as info:
            cp.save(bad)
        assert info.value.path == path
        assert f"cannot store {path} of thread 't', step 1" in str(info.value)
        assert cp.load("t").step == 0


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(json_values)
def test_rows_are_json_as_the_standard_encoder_writes_it(value: Any) -> None:
    expected = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode(value)
    assert backend._dumps(value) == expected


def test_an_unknown_type_still_fails_to_encode() -> None:
    encode: Callable[[object], str] = backend._dumps
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"a": object()})
