"""A saved checkpoint never changes, whatever a later step or a caller mutates afterwards."""

from __future__ import annotations

import attrs
import pytest

from typedflow import END, InMemoryCheckpointer, Interrupted, Runner, StateSchema

# ----- (a) frozen states: shared, never copied, and safe -----------------------------------


@attrs.frozen
class Note:
    """An update: one line of text for the log."""

    text: str
    """The line to append."""


@attrs.frozen
class Log(StateSchema[Note]):
    """A deeply immutable state: a frozen class holding a tuple of strings."""

    lines: tuple[str, ...] = ()
    """The applied updates' texts, oldest first."""

    def apply(self, update: Note) -> Log:
        return Log(lines=(*self.lines, update.text))


@Log.node
def write(state: Log) -> Note:
    return Note(f"line {len(state.lines)}")


def test_frozen_states_are_shared_and_cannot_be_mutated() -> None:
    store = InMemoryCheckpointer(Log)
    runner = Runner(
        Log,
        nodes=[write],
        entry="write",
        routes={"write": lambda s: END if len(s.lines) >= 3 else "write"},
        checkpointer=store,
        interrupt_after=["write"],
    )
    first = runner.invoke(Log(), thread_id="t")
    assert isinstance(first, Interrupted)
    saved = store.load_at("t", 1)
    # Nothing needs copying: what was saved is what the run returned.
    assert saved.state is first.state
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        saved.state.lines = ("changed",)  # type: ignore[misc]  # the frozen class refuses: under test

    while isinstance(runner.resume("t"), Interrupted):
        pass
    assert store.load("t").state.lines == ("line 0", "line 1", "line 2")
    # Later steps made new states; the one saved at step 1 is the same, unchanged.
    again = store.load_at("t", 1)
    assert again == saved
    assert again.state is saved.state
    assert again.state.lines == ("line 0",)


# ----- (b) a schema with mutable fields: copied on save and on load -------------------------


@attrs.frozen
class Add:
    """An update holding a mutable list."""

    item: str
    """The item to add."""
    notes: list[str] = attrs.Factory(list)
    """Free notes; a list, so a caller could mutate it after returning it."""


@attrs.frozen
class Bag(StateSchema[Add]):
    """A frozen class whose fields are a ``list`` and a ``dict``: mutable inside."""

    items: list[str] = attrs.Factory(list)
    """The items added, oldest first."""
    counts: dict[str, int] = attrs.Factory(dict)
    """How often each item was added."""

    def apply(self, update: Add) -> Bag:
        return Bag(
            items=[*self.items, update.item],
            counts={**self.counts, update.item: self.counts.get(update.item, 0) + 1},
        )


@pytest.fixture
def store() -> InMemoryCheckpointer[Bag]:
    return InMemoryCheckpointer(Bag)


def bag_runner(store: InMemoryCheckpointer[Bag]) -> Runner[Bag]:
    @Bag.node
    def add(state: Bag) -> Add:
        return Add(f"i{len(state.items)}")

    return Runner(
        Bag,
        nodes=[add],
        entry="add",
        routes={"add": lambda s: END if len(s.items) >= 3 else "add"},
        checkpointer=store,
    )


def test_mutating_the_input_after_saving(store: InMemoryCheckpointer[Bag]) -> None:
    start = Bag(items=["seed"], counts={"seed": 1})
    result = bag_runner(store).invoke(start, thread_id="t")
    start.items.append("evil")
    start.counts["evil"] = 1
    result.state.items.clear()
    result.checkpoint.state.counts.clear()
    assert store.load_at("t", 0).state == Bag(items=["seed"], counts={"seed": 1})
    assert store.load("t").state == Bag(
        items=["seed", "i1", "i2"], counts={"seed": 1, "i1": 1, "i2": 1}
    )


def test_mutating_a_loaded_checkpoint(store: InMemoryCheckpointer[Bag]) -> None:
    bag_runner(store).invoke(Bag(), thread_id="t")
    loaded = store.load("t")
    expected = Bag(items=["i0", "i1", "i2"], counts={"i0": 1, "i1": 1, "i2": 1})
    assert loaded.state == expected
    loaded.state.items.append("evil")
    loaded.state.counts["i0"] = 99
    for cp in store.history("t"):
        cp.state.items.clear()
    at_two = store.load_at("t", 2)
    at_two.state.counts.clear()
    assert store.load("t").state == expected
    assert store.load_at("t", 2).state == Bag(items=["i0", "i1"], counts={"i0": 1, "i1": 1})
    assert [len(cp.state.items) for cp in store.history("t")] == [3, 2, 1, 0]


def test_a_node_mutating_its_state_in_place_cannot_reach_saved_steps(
    store: InMemoryCheckpointer[Bag],
) -> None:
    @Bag.node
    def first(state: Bag) -> Add:
        return Add("ok")

    @Bag.node
    def sneaky(state: Bag) -> None:
        # Misbehaving code: frozen classes cannot stop a list from being changed in place.
        state.items.append("sneaky")
        state.counts["sneaky"] = 1

    runner = Runner(
        Bag, nodes=[first, sneaky], entry="first", edges={"first": "sneaky"}, checkpointer=store
    )
    runner.invoke(Bag(), thread_id="t")
    assert store.load_at("t", 0).state == Bag()
    assert store.load_at("t", 1).state == Bag(items=["ok"], counts={"ok": 1})


def test_mutating_an_update_after_returning_it(store: InMemoryCheckpointer[Bag]) -> None:
    returned: list[Add] = []

    @Bag.node
    def first(state: Bag) -> Add:
        update = Add("a", notes=["original"])
        returned.append(update)
        return update

    @Bag.node
    def later(state: Bag) -> None:
        returned[0].notes.append("tampered")

    runner = Runner(
        Bag, nodes=[first, later], entry="first", edges={"first": "later"}, checkpointer=store
    )
    runner.invoke(Bag(), thread_id="t")
    assert returned[0].notes == ["original", "tampered"]
    assert store.load_at("t", 1).writes[0].updates == (Add("a", notes=["original"]),)
    loaded = store.load_at("t", 1).writes[0].updates[0]
    loaded.notes.clear()
    assert store.load_at("t", 1).writes[0].updates == (Add("a", notes=["original"]),)


def test_mutating_the_metadata_after_invoke(store: InMemoryCheckpointer[Bag]) -> None:
    metadata: dict[str, str | int | float | bool | None] = {"user": "u1"}
    bag_runner(store).invoke(Bag(), thread_id="t", metadata=metadata)
    metadata["user"] = "someone else"
    metadata["extra"] = True
    assert all(cp.metadata == {"user": "u1"} for cp in store.history("t"))
