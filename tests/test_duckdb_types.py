"""DuckDB backend: every type a schema may use stores and loads back as it was, and a type
it could store but never load again is refused when the checkpointer is built, naming the
field: a union of scalars loads as the member each value is; a union typedflow cannot tell
apart, a dict keyed by something other than text or numbers, and a state of no fields are
refused; an update class of no fields is stored."""

from __future__ import annotations

import datetime as dt
import enum
import types
from decimal import Decimal
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.everything import exactly_equal
from typedflow import END, Checkpoint, Completed, Runner, SchemaError, StateSchema
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


@attrs.frozen
class Tick:
    """An update of one field."""

    n: int = 1
    """Unused."""


class Color(enum.Enum):
    """An enum."""

    RED = "red"


@attrs.frozen
class Point:
    """An attrs class."""

    x: int
    """A coordinate."""


def schema_with(tp: object, default: object = None) -> type[StateSchema[Tick]]:
    """A state schema whose one field ``value`` is typed ``tp``."""

    def body(ns: dict[str, Any]) -> None:
        ns["__annotations__"] = {"value": tp}
        ns["value"] = attrs.field(default=default)
        ns["apply"] = lambda self, update: self

    cls: type[StateSchema[Tick]] = attrs.frozen(
        types.new_class("Holder", (StateSchema[Tick],), {}, body)
    )
    return cls


def round_trip(tp: object, value: object) -> object:
    schema = schema_with(tp)
    with DuckDBCheckpointer(schema) as cp:
        cp.save(Checkpoint(thread_id="t", step=0, state=schema(value), next=()))  # type: ignore[call-arg]  # the field made by schema_with
        return cp.load("t").state.value  # type: ignore[attr-defined]  # the field made by schema_with


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)


@given(value=scalars)
def test_a_union_of_scalars_loads_as_the_member_each_value_is(value: object) -> None:
    loaded = round_trip(str | int | float | bool | None, value)
    assert exactly_equal(loaded, value), (loaded, value)


@pytest.mark.parametrize(
    ("tp", "value", "loaded"),
    [
        (int | float, 2, 2),
        (int | float, 2.0, 2.0),
        (float | str, 3, 3.0),  # no int member: an int is the float it was written as
        (list[str | int], [1, "1", 2], [1, "1", 2]),
        (dict[str, int | None], {"a": None, "b": 1}, {"a": None, "b": 1}),
    ],
)
def test_a_union_of_scalars_keeps_its_values_types(
    tp: object, value: object, loaded: object
) -> None:
    assert exactly_equal(round_trip(tp, value), loaded)


@pytest.mark.parametrize(
    "tp",
    [int | tuple[int, ...], Point | int, str | dt.date, Literal["a"] | int, list[int] | None | str],
)
def test_a_union_typedflow_cannot_tell_apart_is_refused_naming_the_field(tp: object) -> None:
    with pytest.raises(SchemaError, match=r"Holder\.value is typed .*could not tell which member"):
        DuckDBCheckpointer(schema_with(tp))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (str, "k"),
        (int, 7),
        (float, 1.5),
        (bool, True),
        (Color, Color.RED),
        (Literal["a", "b"], "b"),
        (dt.date, dt.date(2025, 1, 2)),
        (dt.datetime, dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.UTC)),
        (dt.time, dt.time(3, 4, 5)),
        (Decimal, Decimal("1.25")),
        (bytes, b"\x00k"),
    ],
)
def test_dicts_keyed_by_text_or_numbers_round_trip(key: object, value: object) -> None:
    loaded = round_trip(dict[key, str], {value: "v"})  # type: ignore[valid-type]  # a key type from the parameters
    assert exactly_equal(loaded, {value: "v"})
    assert type(next(iter(loaded))) is type(value)  # type: ignore[call-overload]  # a dict, checked just above


@pytest.mark.parametrize(
    "key", [tuple[int, int], frozenset[int], Point, int | None, str | int, list[int]]
)
def test_a_dict_keyed_otherwise_is_refused_naming_the_field(key: object) -> None:
    # Each would save and fail later: a tuple key dumps as an unhashable list, a None key is
    # no key of a MAP, an int key of a union comes back as text.
    with pytest.raises(SchemaError, match=r"Holder\.value is a dict whose keys are typed"):
        DuckDBCheckpointer(schema_with(dict[key, str], default={}))  # type: ignore[valid-type]  # a key type from the parameters


@attrs.frozen
class Go:
    """An update of no fields: a node's "done"."""


@attrs.frozen
class Steps(StateSchema[Go]):
    """Counts the updates applied."""

    n: int = 0
    """How many."""

    def apply(self, update: Go) -> Steps:
        return Steps(self.n + 1)


@Steps.node
def go(state: Steps) -> Go:
    return Go()


def test_an_update_class_of_no_fields_is_stored() -> None:
    with DuckDBCheckpointer(Steps) as cp:
        runner = Runner(
            Steps,
            nodes=[go],
            entry="go",
            routes={"go": lambda s: END if s.n >= 3 else "go"},
            checkpointer=cp,
        )
        result = runner.invoke(Steps(), thread_id="t")
        assert isinstance(result, Completed)
        assert result.state == Steps(3)
        assert [w.updates for c in cp.history("t") for w in c.writes] == [(Go(),)] * 3
        assert cp.load("t") == result.checkpoint


@attrs.frozen
class Nothing(StateSchema[Go]):
    """A state of no fields."""

    def apply(self, update: Go) -> Nothing:
        return self


def test_a_state_of_no_fields_is_refused_clearly() -> None:
    with pytest.raises(SchemaError, match=r"Nothing has no fields.*give the state a field"):
        DuckDBCheckpointer(Nothing)
