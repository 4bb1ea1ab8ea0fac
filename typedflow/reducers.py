"""Field reducers: how one field of a state combines with the value an update carries.

A reducer is any function ``(current: F, value: V) -> F``. Declare it on a
state field with :func:`typedflow.field`; mypy checks that the reducer fits
the field's type. The built-ins below are typed generics; any function of the
right shape works too.

Reducers must be pure: they return a new value and never mutate ``current``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeAlias

from typedflow._typing import A, F, K, T, V

__all__ = [
    "Reducer",
    "add",
    "append",
    "extend",
    "merge",
    "merge_by_key",
    "replace",
    "union",
]

Reducer: TypeAlias = Callable[[F, V], F]
"""A reducer: combines a field's current value with an update's value into the new value."""


def replace(current: T, value: T) -> T:
    """The default: the update's value replaces the field's value."""
    return value


def append(current: tuple[T, ...], value: T) -> tuple[T, ...]:
    """Append one item to a tuple field."""
    # A field that only grows is appended to at every step: tuple concatenation copies it
    # once, where unpacking (``(*current, value)``) builds a list and then copies that.
    if type(current) is tuple:
        return current + (value,)  # noqa: RUF005  # see above
    return (*current, value)


def extend(current: tuple[T, ...], value: Iterable[T]) -> tuple[T, ...]:
    """Append every item of the update's value to a tuple field."""
    if type(current) is tuple and type(value) is tuple:  # one copy; see append
        return current + value
    return (*current, *value)


def add(current: A, value: A) -> A:
    """Add the update's value to a numeric field (``current + value``).

    Works for any type whose ``+`` returns its own type: ``int``, ``float``,
    ``Decimal``, ``timedelta`` (and ``str`` or tuples, which it concatenates).
    """
    return current + value


def merge(current: Mapping[K, V], value: Mapping[K, V]) -> dict[K, V]:
    """Merge a mapping into a mapping field; on equal keys the update's value wins."""
    return {**current, **value}


def union(current: frozenset[T], value: Iterable[T]) -> frozenset[T]:
    """Add the update's items to a frozenset field."""
    return current.union(value)


def merge_by_key(key: Callable[[T], K]) -> Callable[[tuple[T, ...], Iterable[T]], tuple[T, ...]]:
    """Upsert items by an id: an item whose key is already present replaces it in place,
    a new key is appended. This is how chat messages are usually kept::

        messages: tuple[Message, ...] = typedflow.field(
            default=(), reducer=merge_by_key(lambda m: m.id)
        )
    """

    def upsert(current: tuple[T, ...], value: Iterable[T]) -> tuple[T, ...]:
        items = list(current)
        where = {key(item): i for i, item in enumerate(items)}
        for item in value:
            k = key(item)
            if k in where:
                items[where[k]] = item
            else:
                where[k] = len(items)
                items.append(item)
        return tuple(items)

    upsert.__qualname__ = upsert.__name__ = "merge_by_key"
    return upsert


BUILTIN_REDUCERS: Final = (replace, append, extend, add, merge, union)
"""The built-in reducers that backends may recognise (to store appends as deltas, say)."""
