"""Must pass mypy: schemas (shared by the other typing files), field reducers and ``is_set``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import assert_type

import attrs

import typedflow
from typedflow import UNSET, StateSchema, Unset, is_set, reducers


@attrs.frozen
class Inc:
    """The update of :class:`Counter`."""

    by: int = 1
    """How much to add."""


@attrs.frozen
class Reset:
    """The update of :class:`Other`; with :class:`Inc`, one of :class:`Tally`'s updates."""

    to: int = 0
    """The value to start again from."""


@attrs.frozen
class Counter(StateSchema[Inc]):
    """A schema with a hand-written reducer."""

    n: int = 0
    """The count."""

    def apply(self, update: Inc) -> Counter:
        return Counter(n=self.n + update.by)


@attrs.frozen
class Other(StateSchema[Reset]):
    """Another schema, whose values, nodes and checkpointers a ``Counter`` runner must refuse."""

    label: str = ""
    """A field ``Counter`` does not have."""

    def apply(self, update: Reset) -> Other:
        return Other(label=str(update.to))


@attrs.frozen
class Tally(StateSchema[Inc | Reset]):
    """A schema whose update type is a union: its nodes may return either."""

    n: int = 0
    """The count."""

    def apply(self, update: Inc | Reset) -> Tally:
        return Tally(n=self.n + update.by if isinstance(update, Inc) else update.to)


@attrs.frozen
class Message:
    """A chat message, upserted by ``id``."""

    id: str
    """The message id."""
    text: str
    """The message text."""


def keep_max(current: int, value: int) -> int:
    """A user reducer: keep the largest value seen."""
    return max(current, value)


@attrs.frozen
class ChatUpdate:
    """The update of :class:`Chat`: each field is ``UNSET`` or the value for its reducer."""

    log: str | Unset = UNSET
    lines: tuple[str, ...] | Unset = UNSET
    turns: int | Unset = UNSET
    cost: float | Unset = UNSET
    scores: dict[str, int] | Unset = UNSET
    tags: frozenset[str] | Unset = UNSET
    messages: tuple[Message, ...] | Unset = UNSET
    best: int | Unset = UNSET
    topic: str | Unset = UNSET


@attrs.frozen
class Chat(StateSchema[ChatUpdate]):
    """A schema whose ``apply`` is derived from one field reducer of every kind."""

    log: tuple[str, ...] = typedflow.field(default=(), reducer=reducers.append)
    lines: tuple[str, ...] = typedflow.field(default=(), reducer=reducers.extend)
    turns: int = typedflow.field(default=0, reducer=reducers.add)
    cost: float = typedflow.field(default=0.0, reducer=reducers.add)
    scores: dict[str, int] = typedflow.field(factory=dict, reducer=reducers.merge)
    tags: frozenset[str] = typedflow.field(default=frozenset(), reducer=reducers.union)
    # The lambda's parameter is inferred from the field's type: ``m`` is a Message.
    messages: tuple[Message, ...] = typedflow.field(
        default=(), reducer=reducers.merge_by_key(lambda m: m.id)
    )
    best: int = typedflow.field(default=0, reducer=keep_max)
    topic: str = typedflow.field(default="")


chat = Chat()
assert_type(chat.log, tuple[str, ...])
assert_type(chat.lines, tuple[str, ...])
assert_type(chat.turns, int)
assert_type(chat.cost, float)
assert_type(chat.scores, dict[str, int])
assert_type(chat.tags, frozenset[str])
assert_type(chat.messages, tuple[Message, ...])
assert_type(chat.best, int)
assert_type(chat.topic, str)
assert_type(chat.apply(ChatUpdate(turns=1)), Chat)
assert_type(Counter().apply(Inc()), Counter)
assert_type(Tally().apply(Inc()), Tally)
assert_type(Tally().apply(Reset()), Tally)

# The built-in reducers are generic: they give back the field's own type.
assert_type(reducers.replace(1, 2), int)
assert_type(reducers.append(("a",), "b"), tuple[str, ...])
assert_type(reducers.extend(("a",), ["b", "c"]), tuple[str, ...])
assert_type(reducers.add(1, 2), int)
assert_type(reducers.add(1.5, 2.0), float)
words: tuple[str, ...] = ("a",)
assert_type(reducers.add(words, words), tuple[str, ...])
assert_type(reducers.merge({"a": 1}, {"b": 2}), dict[str, int])
assert_type(reducers.union(frozenset({"a"}), ["b"]), frozenset[str])


def message_id(message: Message) -> str:
    """The key ``merge_by_key`` upserts messages by."""
    return message.id


assert_type(
    reducers.merge_by_key(message_id),
    Callable[[tuple[Message, ...], Iterable[Message]], tuple[Message, ...]],
)
best_of: reducers.Reducer[int, int] = keep_max


def turns_of(update: ChatUpdate) -> int:
    """``is_set`` narrows an update field to its value type, and ``not is_set`` to ``Unset``."""
    if is_set(update.turns):
        assert_type(update.turns, int)
        return update.turns
    assert_type(update.turns, Unset)
    return 0


def check_schemas() -> None:
    """Run what the types above describe: every reducer folds its update into its field."""
    state = Chat().apply(
        ChatUpdate(
            log="a",
            lines=("b", "c"),
            turns=2,
            cost=0.5,
            scores={"x": 1},
            tags=frozenset({"t"}),
            messages=(Message("m1", "hi"),),
            best=3,
            topic="weather",
        )
    )
    state = state.apply(
        ChatUpdate(
            log="d",
            turns=1,
            cost=0.25,
            scores={"y": 2},
            tags=frozenset({"u"}),
            messages=(Message("m1", "hello"), Message("m2", "bye")),
            best=1,
        )
    )
    assert state == Chat(
        log=("a", "d"),
        lines=("b", "c"),
        turns=3,
        cost=0.75,
        scores={"x": 1, "y": 2},
        tags=frozenset({"t", "u"}),
        messages=(Message("m1", "hello"), Message("m2", "bye")),
        best=3,
        topic="weather",
    )
    assert (turns_of(ChatUpdate(turns=4)), turns_of(ChatUpdate())) == (4, 0)
    assert Tally(n=5).apply(Inc(2)).apply(Reset(1)) == Tally(n=1)
