"""Type variables and structural helper types, defined once for the whole package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

from typing_extensions import TypeVar

if TYPE_CHECKING:
    from typedflow.schema import StateSchema

U = TypeVar("U")
"""An update type: the value a node returns and a schema's ``apply`` consumes."""

U_co = TypeVar("U_co", covariant=True)
"""An update type in a read-only (covariant) position, such as a ``Goto`` command."""

U_contra = TypeVar("U_contra", contravariant=True)
"""An update type in an accepting (contravariant) position, such as ``apply``'s argument."""

S = TypeVar("S", bound="StateSchema[Any]")
"""A state schema: an attrs class deriving from ``StateSchema[U]``."""

S_co = TypeVar("S_co", bound="StateSchema[Any]", covariant=True)
"""A state schema in a read-only (covariant) position, such as a saved checkpoint."""

S2 = TypeVar("S2", bound="StateSchema[Any]")
"""The state schema a self-typed method recovers from its receiver."""

T = TypeVar("T")
"""Any value (a field's item type in reducers)."""

K = TypeVar("K")
"""A mapping key or item id in reducers."""

V = TypeVar("V")
"""A mapping value in reducers, or the value an update carries for a field."""

F = TypeVar("F")
"""The type of a state field that a reducer combines."""

A = TypeVar("A", bound="SupportsClosedAdd")
"""A value whose ``+`` gives a value of its own type (``int``, ``float``, ``str``, tuples)."""


class SupportsClosedAdd(Protocol):
    """A type closed under ``+``: ``int``, ``float``, ``Decimal``, ``timedelta``, ``str``,
    tuples; not ``bool`` (``True + True`` is an ``int``), sets or mappings."""

    def __add__(self, other: Self, /) -> Self: ...


class Applies(Protocol[U_contra, S_co]):
    """Anything with an ``apply(update) -> state`` reducer: a state schema seen structurally.

    Methods that need a schema's update type take their receiver through this
    protocol, so mypy recovers ``U`` from ``S`` without a second type parameter.
    """

    def apply(self, update: U_contra, /) -> S_co: ...


class HasSchema(Protocol[U_contra, S_co]):
    """Anything that exposes its state schema class (a runner or a checkpointer).

    Two members name the same class: ``schema`` gives the state type, ``_schema_applies``
    its update type. Recovering both from one member would lose the state type in code
    generic over it (``def f(runner: Runner[S])``): mypy binds the ``Self`` that ``apply``
    returns to the type variable's bound, ``StateSchema[Any]``, not to ``S``.
    """

    @property
    def schema(self) -> type[S_co]: ...

    @property
    def _schema_applies(self) -> type[Applies[U_contra, Any]]: ...


class HasState(Protocol[U_contra]):
    """Anything that holds a state value (a checkpoint or a run result)."""

    @property
    def state(self) -> Applies[U_contra, Any]: ...


def type_name(tp: object) -> str:
    """How a type reads in a message: a class by its qualified name, ``None`` as None, any
    other form as written (``int | None``, ``tuple[int, ...]``)."""
    if tp is type(None):
        return "None"
    return tp.__qualname__ if isinstance(tp, type) else repr(tp).replace("typing.", "")
