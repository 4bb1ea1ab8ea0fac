"""Must fail mypy: field reducers that do not fit their field, and update fields used unchecked."""

from __future__ import annotations

import attrs

from tests.typing.pass_schemas import ChatUpdate, Message, keep_max
from typedflow import StateSchema, field, is_set
from typedflow.reducers import add, append, extend, merge, merge_by_key, union


def longest(current: str, value: str) -> str:
    return max(current, value, key=len)


def count_as_text(current: int, value: int) -> str:
    return str(current + value)


@attrs.frozen
class Nothing:
    """An update with no fields: only the field declarations below are under test."""


@attrs.frozen
class Misfits(StateSchema[Nothing]):
    appended: int = field(default=0, reducer=append)  # type: ignore[arg-type]  # append needs a tuple field
    appended_list: list[str] = field(factory=list, reducer=append)  # type: ignore[arg-type]  # append builds a tuple, not a list
    extended: str = field(default="", reducer=extend)  # type: ignore[arg-type]  # extend needs a tuple field
    added_set: frozenset[str] = field(default=frozenset(), reducer=add)  # type: ignore[arg-type]  # a frozenset has no +
    added_dict: dict[str, int] = field(factory=dict, reducer=add)  # type: ignore[arg-type]  # a dict has no +
    added_bool: bool = field(default=False, reducer=add)  # type: ignore[arg-type]  # True + True is an int, not a bool
    added_optional: int | None = field(default=None, reducer=add)  # type: ignore[arg-type]  # None + None fails
    added_tags: tuple[str, ...] = field(default=0, reducer=add)  # type: ignore[arg-type]  # an int start for a str-tuple field
    merged_set: frozenset[str] = field(default=frozenset(), reducer=merge)  # type: ignore[arg-type]  # merge needs a mapping field
    unioned: tuple[str, ...] = field(default=(), reducer=union)  # type: ignore[arg-type]  # union needs a frozenset field
    by_key: tuple[Message, ...] = field(default=(), reducer=merge_by_key(lambda m: m.key))  # type: ignore[attr-defined]  # m is a Message, which has no key (mypy: "Message" has no attribute "key")
    by_key_of_str: tuple[str, ...] = field(default=(), reducer=merge_by_key(lambda m: m.id))  # type: ignore[attr-defined]  # m is a str, which has no id (mypy: "str" has no attribute "id")
    user_of_int: str = field(default="", reducer=keep_max)  # type: ignore[arg-type]  # keep_max reduces int fields
    user_of_str: int = field(default=0, reducer=longest)  # type: ignore[arg-type]  # longest reduces str fields
    user_result: int = field(default=0, reducer=count_as_text)  # type: ignore[arg-type]  # it returns a str for an int field


def appended_wrong_item() -> tuple[str, ...]:
    return append(("a",), 1)  # type: ignore[arg-type]  # an int item for a str tuple


def set_value_used_as_str(update: ChatUpdate) -> int:
    if is_set(update.turns):
        return update.turns + "1"  # type: ignore[operator]  # is_set narrowed it to int
    return 0


def unset_value_used_as_int(update: ChatUpdate) -> int:
    if not is_set(update.turns):
        return update.turns + 1  # type: ignore[operator]  # here it is UNSET
    return 0


def update_field_used_unchecked(update: ChatUpdate) -> int:
    return update.turns  # type: ignore[return-value]  # it may be UNSET: check is_set first


def update_field_of_wrong_type() -> ChatUpdate:
    return ChatUpdate(turns="3")  # type: ignore[arg-type]  # turns is an int
