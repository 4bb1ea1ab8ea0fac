"""The "everything" state: one schema with a field of every type typedflow stores.

:class:`Everything` covers int, float, str, bool, bytes, datetime (aware and
naive in the same field), date, Optional, ``tuple[X, ...]``, ``tuple[X, Y]``,
``list``, ``frozenset``, ``dict[str, X]``, nested attrs classes, ``Literal``,
``Enum``, a tagged union of two attrs classes (plain and optional), and fields
with each built-in reducer. :class:`EverythingUpdate` mirrors every field with
``UNSET`` as its default, so ``apply`` is derived from the fields' reducers.

Float fields may hold nan, the infinities and -0.0: the round trip must keep
them exactly, so tests compare values with :func:`exactly_equal` (``==``, except
that nan equals nan and that ``==``'s leniencies count as differences) rather
than excluding nan. The strategies that generate these values live in
:mod:`tests.strategies`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Literal, TypeAlias

import attrs

from typedflow import UNSET, StateSchema, Unset, field
from typedflow.reducers import add, append, extend, merge, merge_by_key, union

__all__ = [
    "Cat",
    "Dog",
    "Everything",
    "EverythingUpdate",
    "Message",
    "Mood",
    "Pet",
    "Point",
    "Role",
    "Shape",
    "exactly_equal",
]


class Role(enum.Enum):
    """Who wrote a message.

    - ``USER``: the person talking to the agent;
    - ``ASSISTANT``: the agent;
    - ``TOOL``: a tool's result.
    """

    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


Mood: TypeAlias = Literal["calm", "busy", "away"]
"""A closed set of strings: ``calm``, ``busy`` or ``away``."""


@attrs.frozen
class Point:
    """A small nested attrs class."""

    x: int
    """The horizontal coordinate."""
    y: float
    """The vertical coordinate (any float, nan and infinities included)."""


@attrs.frozen
class Message:
    """A chat message, kept in a field reduced by ``merge_by_key`` on ``id``."""

    id: str
    """The key that ``merge_by_key`` upserts on."""
    role: Role
    """Who wrote it (an Enum inside a nested class)."""
    text: str
    """The message text (any unicode)."""
    at: datetime | None = None
    """When it was written, if known."""


@attrs.frozen
class Shape:
    """A nested class that itself nests attrs classes and collections."""

    name: str
    """The shape's name."""
    corners: tuple[Point, ...] = ()
    """Its corners, in order."""
    origin: Point | None = None
    """An optional nested class."""


@attrs.frozen
class Cat:
    """One member of the :data:`Pet` union."""

    name: str
    """The cat's name."""
    lives: int = 9
    """Lives left."""


@attrs.frozen
class Dog:
    """The other member of :data:`Pet`; it shares ``name`` with :class:`Cat`, so only the
    union's tag tells a ``Cat("x")`` from a ``Dog("x")``."""

    name: str
    """The dog's name."""
    good: bool = True
    """Whether it is a good dog."""


Pet: TypeAlias = Cat | Dog
"""A union of two attrs classes, stored tagged."""


@attrs.frozen
class EverythingUpdate:
    """The update type of :class:`Everything`: every field mirrored, ``UNSET`` by default."""

    count: int | Unset = UNSET
    """Added to ``count``."""
    total: float | Unset = UNSET
    """Added to ``total``."""
    ratio: float | Unset = UNSET
    """Replaces ``ratio``."""
    name: str | Unset = UNSET
    """Replaces ``name``."""
    flag: bool | Unset = UNSET
    """Replaces ``flag``."""
    blob: bytes | Unset = UNSET
    """Replaces ``blob``."""
    when: datetime | Unset = UNSET
    """Replaces ``when``."""
    day: date | Unset = UNSET
    """Replaces ``day``."""
    maybe: int | Unset | None = UNSET
    """Replaces ``maybe`` (None is a value, UNSET means no change)."""
    log: str | Unset = UNSET
    """Appended to ``log``."""
    history: tuple[int, ...] | Unset = UNSET
    """Extends ``history``."""
    pair: tuple[int, str] | Unset = UNSET
    """Replaces ``pair``."""
    points: list[Point] | Unset = UNSET
    """Replaces ``points``."""
    tags: frozenset[str] | Unset = UNSET
    """Added to ``tags``."""
    scores: dict[str, int] | Unset = UNSET
    """Merged into ``scores``."""
    messages: tuple[Message, ...] | Unset = UNSET
    """Upserted into ``messages`` by id."""
    shape: Shape | Unset = UNSET
    """Replaces ``shape``."""
    mood: Mood | Unset = UNSET
    """Replaces ``mood``."""
    role: Role | Unset = UNSET
    """Replaces ``role``."""
    pet: Pet | Unset = UNSET
    """Replaces ``pet``."""
    friend: Pet | Unset | None = UNSET
    """Replaces ``friend``."""
    stamps: tuple[datetime, ...] | Unset = UNSET
    """Replaces ``stamps``."""


def _message_id(message: Message) -> str:
    return message.id


@attrs.frozen(kw_only=True)
class Everything(StateSchema[EverythingUpdate]):
    """A state with a field of every type typedflow supports, and every built-in reducer."""

    count: int = field(default=0, reducer=add)
    """An int summed by ``add``."""
    total: float = field(default=0.0, reducer=add)
    """A float summed by ``add``."""
    ratio: float = 0.0
    """A float, replaced (may be nan or an infinity)."""
    name: str = ""
    """Any unicode text."""
    flag: bool = False
    """A bool (must come back a bool, not an int)."""
    blob: bytes = b""
    """Raw bytes."""
    when: datetime = datetime(2025, 1, 1)  # naive on purpose: both kinds are stored
    """A datetime, timezone-aware or naive; the round trip keeps which."""
    day: date = date(2025, 1, 1)
    """A date."""
    maybe: int | None = None
    """An Optional."""
    log: tuple[str, ...] = field(default=(), reducer=append)
    """Lines appended one at a time by ``append``."""
    history: tuple[int, ...] = field(default=(), reducer=extend)
    """Numbers appended in batches by ``extend``."""
    pair: tuple[int, str] = (0, "")
    """A fixed-length tuple of two types."""
    points: list[Point] = attrs.field(factory=list)
    """A list of nested attrs instances (mutable, so backends copy it)."""
    tags: frozenset[str] = field(default=frozenset(), reducer=union)
    """A set grown by ``union``."""
    scores: dict[str, int] = field(factory=dict, reducer=merge)
    """A mapping merged by ``merge`` (the update's value wins)."""
    messages: tuple[Message, ...] = field(default=(), reducer=merge_by_key(_message_id))
    """Messages upserted by id."""
    shape: Shape = Shape("")
    """Nested attrs classes, two levels deep."""
    mood: Mood = "calm"
    """A Literal."""
    role: Role = Role.USER
    """An Enum."""
    pet: Pet = Cat("tom")
    """A tagged union of two attrs classes."""
    friend: Pet | None = None
    """An optional tagged union."""
    stamps: tuple[datetime, ...] = ()
    """Datetimes in a collection, aware and naive mixed."""


def exactly_equal(a: object, b: object) -> bool:
    """``a == b``, made exact for round trips: nan equals nan, and what ``==`` forgives
    counts as a difference (``True`` against ``1``, ``-0.0`` against ``0.0``, a tuple
    against a list, the same instant in two UTC offsets, a naive against an aware time).

    Float fields of :class:`Everything` may hold nan, which no ``==`` equals, so the
    round-trip properties compare with this function instead of ``==``.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)  # narrowed for mypy: the types are the same
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, datetime):
        assert isinstance(b, datetime)
        return a == b and a.utcoffset() == b.utcoffset() and a.tzinfo == b.tzinfo
    cls = type(a)
    if attrs.has(cls):
        return all(exactly_equal(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(cls))
    if isinstance(a, tuple | list):
        assert isinstance(b, tuple | list)
        return len(a) == len(b) and all(exactly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping)
        return list(a) == list(b) and all(exactly_equal(a[k], b[k]) for k in a)
    if isinstance(a, frozenset | set):
        assert isinstance(b, frozenset | set)
        # Items of the sets of Everything are strings: == is exact for them.
        return a == b
    return a == b
