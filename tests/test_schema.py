"""State schemas: what typedflow accepts as a schema, and the field reducers of ``apply``."""

from __future__ import annotations

from collections.abc import Mapping  # field types are resolved at run time
from typing import Literal, cast

import attrs
import pytest

from typedflow import (
    UNSET,
    InMemoryCheckpointer,
    Runner,
    SchemaError,
    StateSchema,
    TypedflowError,
    Unset,
    UpdateTypeError,
    field,
    is_set,
)
from typedflow.reducers import add, append, extend, merge, merge_by_key, replace, union


@attrs.frozen
class Inc:
    """An update: how much to add."""

    by: int = 1
    """The amount added."""


def runner_of(schema: type[StateSchema[Inc]]) -> Runner[StateSchema[Inc]]:
    """Build a one-node runner of ``schema``: the point where a schema is checked."""

    def step(state: StateSchema[Inc]) -> Inc:
        return Inc()

    return Runner(schema, nodes=[schema.node(name="step")(step)], entry="step")


# ----- what is a schema --------------------------------------------------------------------


def test_a_schema_must_be_an_attrs_class() -> None:
    class Plain(StateSchema[Inc]):
        pass

    with pytest.raises(
        SchemaError, match=r"Plain is not an attrs class: decorate it with @attrs.frozen"
    ):
        runner_of(Plain)
    with pytest.raises(SchemaError, match="not an attrs class"):
        InMemoryCheckpointer(Plain)


def test_a_schema_must_be_frozen() -> None:
    @attrs.define
    class Mutable(StateSchema[Inc]):
        n: int = 0

        def apply(self, update: Inc) -> Mutable:
            return Mutable(n=self.n + update.by)

    with pytest.raises(SchemaError, match=r"Mutable is not frozen") as info:
        runner_of(Mutable)
    assert isinstance(info.value, TypedflowError)
    assert isinstance(info.value, TypeError)


def test_a_schema_must_name_its_update_type() -> None:
    @attrs.frozen
    class Anonymous(StateSchema):  # type: ignore[type-arg]  # the missing update type is under test
        n: int = 0

    with pytest.raises(
        SchemaError, match=r"does not name its update type: derive it from StateSchema\["
    ):
        runner_of(Anonymous)


def test_an_update_type_must_be_a_class() -> None:
    @attrs.frozen
    class Literally(StateSchema[Literal["go"]]):
        n: int = 0

        def apply(self, update: Literal["go"]) -> Literally:
            return Literally(n=self.n + 1)

    with pytest.raises(SchemaError, match="is not a class or a union of classes"):
        InMemoryCheckpointer(Literally)


class PlainUpdate:
    """An update class that is not an attrs class."""

    n: int = 0


@attrs.frozen
class Mismatch:
    """An update with a field that the state below lacks."""

    n: int | Unset = UNSET
    m: int | Unset = UNSET


def test_a_derived_apply_needs_an_attrs_update_type() -> None:
    @attrs.frozen
    class Derived(StateSchema[PlainUpdate]):
        n: int = field(default=0, reducer=add)

    with pytest.raises(SchemaError, match=r"update type PlainUpdate must be an attrs class"):
        InMemoryCheckpointer(Derived)


def test_a_derived_apply_needs_update_fields_the_state_has() -> None:
    @attrs.frozen
    class Derived(StateSchema[Mismatch]):
        n: int = field(default=0, reducer=add)

    with pytest.raises(SchemaError, match=r"update field Mismatch.m has no field of the same name"):
        InMemoryCheckpointer(Derived)


def test_a_hand_written_apply_may_take_any_update_class() -> None:
    @attrs.frozen
    class Manual(StateSchema[PlainUpdate]):
        n: int = 0

        def apply(self, update: PlainUpdate) -> Manual:
            return Manual(n=self.n + update.n)

    InMemoryCheckpointer(Manual)  # accepted: nothing raised


def test_field_needs_exactly_one_default() -> None:
    with pytest.raises(TypeError, match="exactly one of default= or factory="):
        field(reducer=add)  # neither default: only the run-time check can tell
    with pytest.raises(TypeError, match="exactly one of default= or factory="):
        field(default=0, factory=int)  # both defaults: only the run-time check can tell
    with pytest.raises(TypeError, match="must be callable"):
        field(default=0, reducer=5)  # type: ignore[arg-type]  # a bad reducer: under test


# ----- a union update type -----------------------------------------------------------------


@attrs.frozen
class Reset:
    """An update that sets the count back to zero."""


@attrs.frozen
class Tally(StateSchema[Inc | Reset]):
    """A counter whose nodes may add to it or reset it."""

    n: int = 0
    """The count."""

    def apply(self, update: Inc | Reset) -> Tally:
        if isinstance(update, Reset):
            return Tally()
        return Tally(n=self.n + update.by)


def test_a_union_update_type_accepts_each_member() -> None:
    @Tally.node
    def count(state: Tally) -> list[Inc | Reset]:
        return [Inc(5), Reset(), Inc(2)]

    assert Runner(Tally, nodes=[count], entry="count").invoke(Tally()).state == Tally(n=2)


def test_a_union_update_type_rejects_other_types() -> None:
    @Tally.node
    def count(state: Tally) -> Inc:
        return cast("Inc", PlainUpdate())  # cast: untyped code returning the wrong type

    with pytest.raises(UpdateTypeError, match="'count'"):
        Runner(Tally, nodes=[count], entry="count").invoke(Tally())


# ----- field reducers ----------------------------------------------------------------------


@attrs.frozen
class Msg:
    """A chat message, kept by id."""

    id: str
    text: str


def msg_id(m: Msg) -> str:
    return m.id


def keep_longest(current: str, value: str) -> str:
    """A user's own reducer: keep the longer string."""
    return value if len(value) > len(current) else current


@attrs.frozen
class AllUpdate:
    """An update for every field of :class:`All`; UNSET leaves a field alone."""

    name: str | Unset = UNSET
    events: str | Unset = UNSET
    items: tuple[int, ...] | Unset = UNSET
    total: int | Unset = UNSET
    scores: Mapping[str, int] | Unset = UNSET
    messages: tuple[Msg, ...] | Unset = UNSET
    tags: frozenset[str] | Unset = UNSET
    longest: str | Unset = UNSET


@attrs.frozen
class All(StateSchema[AllUpdate]):
    """A state with one field per built-in reducer, and one with a user's reducer."""

    name: str = ""
    """No reducer declared: replaced."""
    events: tuple[str, ...] = field(default=(), reducer=append)
    items: tuple[int, ...] = field(default=(), reducer=extend)
    total: int = field(default=0, reducer=add)
    scores: Mapping[str, int] = field(factory=dict, reducer=merge)
    messages: tuple[Msg, ...] = field(default=(), reducer=merge_by_key(msg_id))
    tags: frozenset[str] = field(default=frozenset(), reducer=union)
    longest: str = field(default="", reducer=keep_longest)
    label: str = field(default="", reducer=replace)


def start() -> All:
    return All(
        name="old",
        events=("e1",),
        items=(1, 2),
        total=5,
        scores={"a": 1, "b": 2},
        messages=(Msg("m1", "hi"), Msg("m2", "yo")),
        tags=frozenset({"x"}),
        longest="abc",
        label="first",
    )


@pytest.mark.parametrize(
    ("update", "changed"),
    [
        pytest.param(AllUpdate(name="new"), {"name": "new"}, id="replace"),
        pytest.param(AllUpdate(events="e2"), {"events": ("e1", "e2")}, id="append"),
        pytest.param(AllUpdate(items=(3, 4)), {"items": (1, 2, 3, 4)}, id="extend"),
        pytest.param(AllUpdate(items=()), {}, id="extend-empty"),
        pytest.param(AllUpdate(total=3), {"total": 8}, id="add"),
        pytest.param(AllUpdate(total=-5), {"total": 0}, id="add-negative"),
        pytest.param(
            AllUpdate(scores={"b": 20, "c": 3}), {"scores": {"a": 1, "b": 20, "c": 3}}, id="merge"
        ),
        pytest.param(
            AllUpdate(messages=(Msg("m1", "hello"), Msg("m3", "new"))),
            {"messages": (Msg("m1", "hello"), Msg("m2", "yo"), Msg("m3", "new"))},
            id="merge_by_key",
        ),
        pytest.param(
            AllUpdate(messages=(Msg("m3", "a"), Msg("m3", "b"))),
            {"messages": (Msg("m1", "hi"), Msg("m2", "yo"), Msg("m3", "b"))},
            id="merge_by_key-twice-in-one-update",
        ),
        pytest.param(
            AllUpdate(tags=frozenset({"x", "y"})), {"tags": frozenset({"x", "y"})}, id="union"
        ),
        pytest.param(AllUpdate(longest="ab"), {}, id="user-reducer-keeps"),
        pytest.param(AllUpdate(longest="abcd"), {"longest": "abcd"}, id="user-reducer-takes"),
    ],
)
def test_each_reducer(update: AllUpdate, changed: dict[str, object]) -> None:
    before = start()
    after = before.apply(update)
    assert attrs.asdict(after, recurse=False) == {**attrs.asdict(before, recurse=False), **changed}
    # The old state is untouched.
    assert before == start()


def test_several_fields_in_one_update() -> None:
    after = start().apply(AllUpdate(name="n", total=1, events="e2"))
    assert (after.name, after.total, after.events) == ("n", 6, ("e1", "e2"))
    assert after.items == (1, 2)


def test_unset_fields_mean_no_change() -> None:
    state = start()
    assert state.apply(AllUpdate()) == start()
    assert state.apply(AllUpdate(name=UNSET, total=UNSET)) == start()


def test_apply_returns_a_new_object_and_leaves_the_old_one() -> None:
    state = start()
    scores = state.scores
    after = state.apply(AllUpdate(scores={"z": 26}, total=1))
    assert after is not state
    assert state == start()
    assert scores == {"a": 1, "b": 2}
    assert after.scores == {"a": 1, "b": 2, "z": 26}


def test_a_hand_written_apply_leaves_the_old_state() -> None:
    state = Tally(n=3)
    after = state.apply(Inc(2))
    assert after == Tally(n=5)
    assert state == Tally(n=3)


def test_an_update_may_mirror_only_some_fields() -> None:
    @attrs.frozen
    class TotalOnly:
        total: int | Unset = UNSET

    @attrs.frozen
    class Small(StateSchema[TotalOnly]):
        total: int = field(default=0, reducer=add)
        name: str = "kept"

    assert Small(total=1).apply(TotalOnly(total=2)) == Small(total=3, name="kept")


def test_field_reducers_run_in_the_runner() -> None:
    @All.node
    def first(state: All) -> list[AllUpdate]:
        return [AllUpdate(total=1, events="a"), AllUpdate(total=2, messages=(Msg("m1", "x"),))]

    @All.node
    def second(state: All) -> AllUpdate:
        return AllUpdate(total=state.total * 10, messages=(Msg("m1", "y"),), tags=frozenset({"t"}))

    runner = Runner(All, nodes=[first, second], entry="first", edges={"first": "second"})
    state = runner.invoke(All()).state
    assert state.total == 3 + 30
    assert state.events == ("a",)
    assert state.messages == (Msg("m1", "y"),)
    assert state.tags == frozenset({"t"})


def test_is_set() -> None:
    update = AllUpdate(total=0)
    assert is_set(update.total)
    assert not is_set(update.name)


# ----- update fields that replace a state field of another type ----------------------------


@attrs.frozen
class Retitle:
    """An update whose ``title`` cannot be the state's."""

    title: int | Unset = UNSET


@attrs.frozen
class Titled(StateSchema[Retitle]):
    title: str = ""


@attrs.frozen
class Blank:
    """An update that may set ``title`` to None, which the state's ``title`` is not."""

    title: str | Unset | None = UNSET


@attrs.frozen
class Untitled(StateSchema[Blank]):
    title: str = ""


class Base:
    """A plain class."""


class Derived(Base):
    """A subclass of it."""


@attrs.frozen
class Fitting:
    """An update every field of which fits the state's (as mypy would accept)."""

    ratio: int | Unset = UNSET  # an int is a float, for mypy as here
    count: bool | Unset = UNSET  # a bool is an int
    note: str | Unset | None = UNSET  # the state's note is optional
    thing: Derived | Unset = UNSET  # a subclass
    tags: tuple[str, ...] | Unset = UNSET  # generic: not judged here
    total: float | Unset = UNSET  # added, not replaced: not judged here


@attrs.frozen
class Fits(StateSchema[Fitting]):
    ratio: float = 0.0
    count: int = 0
    note: str | None = None
    thing: Base = attrs.field(factory=Base)
    tags: tuple[str, ...] = ()
    total: int = field(default=0, reducer=add)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            Titled,
            "update field Retitle.title is typed int, but it replaces Titled.title, typed str",
        ),
        (
            Untitled,
            "update field Blank.title is typed str | None, but it replaces Untitled.title, "
            "typed str, which cannot hold a value of None",
        ),
    ],
)
def test_an_update_field_that_cannot_be_the_state_field_it_replaces_is_refused(
    schema: type[StateSchema[object]], message: str
) -> None:
    with pytest.raises(SchemaError) as info:
        InMemoryCheckpointer(schema)
    assert message in str(info.value)


def test_update_fields_that_fit_the_state_fields_they_replace_are_accepted() -> None:
    state = Fits().apply(Fitting(ratio=2, count=True, note=None, thing=Derived(), tags=("a",)))
    assert (state.ratio, state.count, state.note, state.tags) == (2, True, None, ("a",))
    assert isinstance(state.thing, Derived)
    InMemoryCheckpointer(Fits)
