"""DuckDB backend: a value outside its ``Literal`` is refused when it is saved, naming where
it is, and the thread stays loadable at its last good step. (Stored, it could never be
loaded again: the converter refuses it, so the thread could be neither resumed, listed nor
forked past it.) What is saved loads back equal."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any, Literal, cast

import attrs
import cattrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from typedflow import (
    END,
    UNSET,
    Checkpoint,
    Runner,
    SerializationError,
    StateSchema,
    Unset,
    field,
)
from typedflow._serde import Serde
from typedflow.checkpoint import duckdb as backend
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.reducers import append


class Mood(enum.Enum):
    """A plain enum of text values."""

    CALM = "calm"
    CROSS = "cross"


class Level(enum.IntEnum):
    """An int enum."""

    LOW = 1
    HIGH = 2


class Tag(enum.StrEnum):
    """A str enum."""

    NEW = "new"
    OLD = "old"


class Nick(str):
    """A str subclass."""

    __slots__ = ()


@attrs.frozen
class Message:
    """A message whose role is one of two."""

    role: Literal["user", "assistant"]
    """Who wrote it."""
    text: str
    """What it says."""


@attrs.frozen
class Say:
    """An update: a message to append."""

    messages: Message | Unset = UNSET
    """Appended to the log."""


@attrs.frozen
class Chat(StateSchema[Say]):
    """A log of messages, and fields of each kind of Literal and Enum."""

    messages: tuple[Message, ...] = field(default=(), reducer=append)
    """Grows by one message per step."""
    size: Literal[1, 2, 3] = 1
    """A Literal of ints: BIGINT."""
    key: Literal[1, "one"] = 1
    """A Literal of an int and a str: JSON."""
    mood: Mood = Mood.CALM
    """An Enum: VARCHAR."""
    level: Level = Level.LOW
    """An IntEnum: BIGINT."""
    tag: Tag = Tag.NEW
    """A StrEnum: VARCHAR."""
    nick: Nick = Nick("anon")
    """A str subclass: JSON (a class of the user's)."""


def checkpoint(state: Chat, step: int = 0) -> Checkpoint[Chat]:
    return Checkpoint(thread_id="t", step=step, state=state, next=("talk",))


def saved(cp: DuckDBCheckpointer[Chat], state: Chat, step: int = 0) -> None:
    cp.save(checkpoint(state, step))


def bad(value: object) -> Any:
    """``value`` typed as Any: what untyped code (a model's reply, say) may hand a node."""
    return cast("Any", value)


@pytest.mark.parametrize(
    ("state", "path", "shown"),
    [
        (
            Chat(messages=(Message("user", "hi"), Message(bad("system"), "obey"))),
            "state.messages[1].role",
            "expected one of 'user', 'assistant', got 'system'",
        ),
        (Chat(size=bad(4)), "state.size", "expected one of 1, 2, 3, got 4"),
        # 1 == True, but Literal[1, 2, 3] does not admit True.
        (Chat(size=bad(True)), "state.size", "expected one of 1, 2, 3, got True"),
        (Chat(key=bad("two")), "state.key", "expected one of 1, 'one', got 'two'"),
        (Chat(key=bad("1")), "state.key", "expected one of 1, 'one', got '1'"),
        (Chat(size=bad([1])), "state.size", "expected one of 1, 2, 3, got [1]"),
    ],
)
def test_a_value_outside_its_literal_is_refused_naming_its_path(
    tmp_path: Path, state: Chat, path: str, shown: str
) -> None:
    with DuckDBCheckpointer(Chat, tmp_path / "chat.duckdb") as cp:
        saved(cp, Chat(messages=(Message("user", "hi"),)))
        with pytest.raises(SerializationError) as info:
            saved(cp, state, step=1)
        assert info.value.path == path
        assert f"cannot store {path} of thread 't', step 1: {shown}" in str(info.value)
    # Nothing of the refused step was stored: the thread loads, at its last good step.
    with DuckDBCheckpointer(Chat, tmp_path / "chat.duckdb") as cp:
        assert [c.step for c in cp.history("t")] == [0]
        assert cp.load("t").state == Chat(messages=(Message("user", "hi"),))


@Chat.node
def talk(state: Chat) -> Say:
    # The third message comes back with a role the schema does not have.
    role = "system" if len(state.messages) == 2 else "user"
    return Say(messages=Message(bad(role), f"message {len(state.messages)}"))


def test_a_node_returning_a_value_outside_its_literal_leaves_a_loadable_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.duckdb"
    with DuckDBCheckpointer(Chat, path) as cp:
        runner = Runner(
            Chat,
            nodes=[talk],
            entry="talk",
            routes={"talk": lambda s: END if len(s.messages) >= 4 else "talk"},
            checkpointer=cp,
        )
        with pytest.raises(SerializationError) as info:
            runner.invoke(Chat(), thread_id="t")
        assert "of thread 't', step 3" in str(info.value)
        assert "got 'system'" in str(info.value)
    with DuckDBCheckpointer(Chat, path) as cp:
        history = cp.history("t")
        assert [c.step for c in history] == [2, 1, 0]
        assert [m.role for m in history[0].state.messages] == ["user", "user"]
        assert cp.fork("t", 2, "u").state == history[0].state


@settings(max_examples=60, deadline=None)
@given(
    role=st.sampled_from(["user", "assistant", "system", "User", ""]),
    size=st.sampled_from([1, 2, 3, 0, 4, True, False, 1.0]),
    key=st.sampled_from([1, "one", 2, "1", True]),
)
def test_what_saves_loads_back_equal_and_only_literal_values_save(
    role: str, size: object, key: object
) -> None:
    state = Chat(
        messages=(Message(bad(role), "x"),),
        size=bad(size),
        key=bad(key),
        mood=Mood.CROSS,
        level=Level.HIGH,
    )
    admitted = (
        role in ("user", "assistant")
        and type(size) is int
        and size in (1, 2, 3)
        and (type(key), key) in ((int, 1), (str, "one"))
    )
    with DuckDBCheckpointer(Chat) as cp:
        if admitted:
            saved(cp, state)
            assert cp.load("t").state == state
        else:
            with pytest.raises(SerializationError):
                saved(cp, state)
            assert cp.threads() == []


def test_enum_fields_store_their_values_and_load_as_their_members(tmp_path: Path) -> None:
    # An IntEnum is an int and a StrEnum a str: they once loaded as plain ints and strs.
    state = Chat(mood=Mood.CROSS, level=Level.HIGH, tag=Tag.OLD, nick=Nick("ada"))
    with DuckDBCheckpointer(Chat, tmp_path / "chat.duckdb") as cp:
        for step in range(backend._MANY + 1):  # enough for a long read too
            saved(cp, state, step)
        cp.flush()
        assert cp.connection.execute(
            "SELECT DISTINCT state.mood, state.level, state.tag FROM chat_checkpoints"
        ).fetchall() == [("cross", 2, "old")]
    with DuckDBCheckpointer(Chat, tmp_path / "chat.duckdb") as cp:
        loaded = [cp.load("t"), cp.load_at("t", 3), *cp.history("t", limit=2), *cp.history("t")]
        for c in loaded:
            assert c.state == state
            assert c.state.level is Level.HIGH
            assert c.state.mood is Mood.CROSS
            assert c.state.tag is Tag.OLD
            assert type(c.state.nick) is Nick
        forked = cp.fork("t", 3, "u")  # stores a loaded state again
        assert forked.state.level is Level.HIGH


@given(
    level=st.sampled_from(Level),
    tag=st.sampled_from(Tag),
    mood=st.sampled_from(Mood),
    nick=st.text().map(Nick),
)
def test_enums_and_scalar_subclasses_round_trip_exactly(
    level: Level, tag: Tag, mood: Mood, nick: Nick
) -> None:
    state = Chat(level=level, tag=tag, mood=mood, nick=nick)
    serde = Serde(Chat)
    loaded = serde.load_state(serde.dump_state(state))
    assert loaded == state
    assert (type(loaded.level), type(loaded.tag), type(loaded.mood), type(loaded.nick)) == (
        Level,
        Tag,
        Mood,
        Nick,
    )


@attrs.frozen
class Mine:
    """An update."""


@attrs.frozen
class Own(StateSchema[Mine]):
    """A state whose IntEnum field the user's converter structures its own way."""

    level: Level = Level.LOW
    """Loaded by the user's hook."""

    def apply(self, update: Mine) -> Own:
        return self


def test_a_users_own_hook_for_an_int_enum_is_kept() -> None:
    converter = cattrs.Converter()
    converter.register_structure_hook(Level, lambda value, _: Level.HIGH)
    serde = Serde(Own, converter)
    assert serde.load_state(serde.dump_state(Own(level=Level.LOW))).level is Level.HIGH
