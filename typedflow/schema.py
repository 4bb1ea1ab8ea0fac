"""State schemas: the attrs class that holds a workflow's state and names its update type.

A schema is an attrs class deriving from ``StateSchema[U]``; ``U`` is the type
of the updates its nodes return. The reducer ``apply(update) -> Self`` is either
written by hand or derived from per-field reducers (see :func:`field`): the
update is then an attrs class whose fields mirror some of the state's fields,
each defaulting to :data:`UNSET` ("no change")::

    @attrs.frozen
    class ChatUpdate:
        messages: tuple[Message, ...] | Unset = UNSET
        turns: int | Unset = UNSET

    @attrs.frozen
    class Chat(StateSchema[ChatUpdate]):
        messages: tuple[Message, ...] = typedflow.field(default=(), reducer=extend)
        turns: int = typedflow.field(default=0, reducer=add)
"""

from __future__ import annotations

import enum
import functools
import threading
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    Never,
    Self,
    TypeAlias,
    cast,
    overload,
)

import attrs
from typing_extensions import TypeIs

from typedflow._typing import F, S, U, V, type_name
from typedflow.errors import SchemaError
from typedflow.nodes import Goto, Interrupt
from typedflow.reducers import replace

if TYPE_CHECKING:
    from typedflow.nodes import Node, NodeOutput

__all__ = ["UNSET", "StateSchema", "Unset", "field", "is_set", "schema_info"]

REDUCER_KEY: Final = "typedflow.reducer"
"""The attrs metadata key under which :func:`field` records a field's reducer."""


class _UnsetType(enum.Enum):
    """The type of :data:`UNSET`; its only value is ``UNSET``."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _UnsetType.UNSET
"""An update field left at UNSET means "leave this state field as it is"."""

Unset: TypeAlias = Literal[_UnsetType.UNSET]
"""The type of :data:`UNSET`, for update fields: ``n: int | Unset = UNSET``."""


def is_set(value: V | Unset) -> TypeIs[V]:
    """True when an update field carries a value (is not :data:`UNSET`)."""
    return value is not UNSET


@typing.final
class _NoDefault:
    """The type of the sentinel that marks ``field(default=...)`` as not given."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


_NO_DEFAULT: Final = _NoDefault()


# Deliberately one signature, not an overload per default/factory form: mypy infers the
# arguments of an overloaded call without context first, so a lambda given to a generic
# reducer factory (``merge_by_key(lambda m: m.id)``) would not learn the field's item type.
def field(
    *,
    default: F | _NoDefault = _NO_DEFAULT,
    factory: Callable[[], F] | None = None,
    reducer: Callable[[F, Never], F] = replace,
    doc: str = "",
) -> F:
    """Declare a state field with the reducer that folds updates into it.

    Args:
        default: The field's initial value.
        factory: Makes the initial value, instead of ``default``.
        reducer: ``(current, value) -> new``; :func:`typedflow.reducers.replace` if omitted.
            The default :meth:`StateSchema.apply` folds updates with it (so does a
            hand-written ``apply`` that calls ``super().apply(update)``); a hand-written
            ``apply`` that does not never calls it.
        doc: Documentation kept in the field's metadata.

    Raises:
        TypeError: neither or both of ``default`` and ``factory`` were given, or
            ``reducer`` is not callable.

    mypy checks that ``reducer`` fits the annotated type of the field: it must take
    the field's current value and return a value of the field's type. (The value
    parameter is typed ``Never`` so that it accepts a reducer of any value type
    without letting a generic reducer such as ``add`` solve its type variable to
    ``Any``.)
    """
    if isinstance(default, _NoDefault) == (factory is None):
        raise TypeError("typedflow.field() needs exactly one of default= or factory=")
    if not callable(reducer):
        raise TypeError(f"typedflow.field(reducer=...) must be callable, got {reducer!r}")
    metadata = {REDUCER_KEY: reducer, "doc": doc}
    if isinstance(default, _NoDefault):
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


class StateSchema(Generic[U]):
    """Base class of state schemas; the type argument is the schema's update type.

    Subclasses are frozen attrs classes (``@attrs.frozen``). Override
    :meth:`apply` to write the reducer by hand, or declare per-field reducers
    with :func:`field` and let the default ``apply`` fold updates field by field.
    """

    __slots__ = ()

    schema_version: ClassVar[int] = 1
    """The version recorded with every stored checkpoint; raise it when the schema changes."""

    def apply(self, update: U) -> Self:
        """Return the state after ``update``; pure, never mutates ``self``.

        The default folds each set field of ``update`` into the state field of
        the same name with that field's reducer.
        """
        info = schema_info(type(self))
        reducers = info.reducers
        changes: dict[str, object] = {}
        for name in info.update_fields_of(type(update)):
            value = getattr(update, name)
            if value is UNSET:
                continue
            changes[name] = reducers[name](getattr(self, name), value)
        if not changes:
            return self
        return info.evolve(self, changes)

    @overload
    @classmethod
    def node(
        cls, fn: Callable[[Self], NodeOutput[U] | Awaitable[NodeOutput[U]]], /
    ) -> Node[Self]: ...
    @overload
    @classmethod
    def node(
        cls, /, *, name: str | None = None
    ) -> Callable[[Callable[[Self], NodeOutput[U] | Awaitable[NodeOutput[U]]]], Node[Self]]: ...
    @classmethod
    def node(
        cls,
        fn: Callable[[Self], Any] | None = None,
        /,
        *,
        name: str | None = None,
    ) -> Node[Self] | Callable[[Callable[[Self], Any]], Node[Self]]:
        """Turn ``fn(state) -> update | [updates] | Goto | Interrupt | None`` (sync or async)
        into a node of this schema. Use as ``@Schema.node`` or ``@Schema.node(name="...")``.
        """
        from typedflow.nodes import Node

        def wrap(f: Callable[[Self], Any]) -> Node[Self]:
            return Node.of(cls, f, name=name)

        if fn is None:
            return wrap
        return wrap(fn)


@attrs.frozen
class SchemaInfo:
    """What typedflow learnt about a schema class when it was first used."""

    schema: type[StateSchema[Any]]
    """The state class."""
    update_type: object
    """The update type, as written in ``StateSchema[...]``."""
    update_classes: tuple[type, ...]
    """The runtime classes an update may be an instance of."""
    reducers: Mapping[str, Callable[[Any, Any], Any]]
    """Each state field's reducer (``replace`` where none was declared)."""
    derived_apply: bool
    """True when ``apply`` is the default, field-by-field fold."""
    field_names: frozenset[str]
    """The state's field names."""
    init_fields: tuple[tuple[str, str], ...] = ()
    """``(attribute name, __init__ argument name)`` of each field that ``__init__`` takes."""
    plain_update_classes: frozenset[type] = frozenset()
    """The update classes whose instances are one update by their exact type (not None,
    a sequence, ``Goto`` or ``Interrupt``): a node's return value of one of these exact
    types needs no further inspection."""

    def update_fields_of(self, update_class: type) -> tuple[str, ...]:
        """The field names of an update class (all checked to exist on the state)."""
        return _update_field_names(update_class)

    def evolve(self, state: S, changes: dict[str, object]) -> S:
        """``attrs.evolve(state, **changes)``, with the field list worked out once per
        schema rather than on every call (this runs for every update of every step).
        ``changes`` is consumed."""
        for name, arg in self.init_fields:
            if arg not in changes:
                changes[arg] = getattr(state, name)
        return type(state)(**changes)

    def check_update(self, value: object) -> bool:
        """True when ``value`` is an instance of the schema's update type."""
        return isinstance(value, self.update_classes)


_infos: dict[type, SchemaInfo] = {}
_infos_lock = threading.Lock()


def schema_info(schema: type[StateSchema[Any]]) -> SchemaInfo:
    """Check a schema class once and return what typedflow needs to know about it.

    Raises:
        SchemaError: the class is not a frozen attrs class, names no update
            type, or derives ``apply`` from fields its update type does not mirror.
    """
    info = _infos.get(schema)
    if info is not None:
        return info
    with _infos_lock:
        info = _infos.get(schema)
        if info is None:
            info = _inspect(schema)
            _infos[schema] = info
    return info


def _inspect(schema: type[StateSchema[Any]]) -> SchemaInfo:
    name = schema.__qualname__
    if not isinstance(schema, type) or not issubclass(schema, StateSchema):  # type: ignore[redundant-expr]  # untyped callers may pass anything
        raise SchemaError(f"{schema!r} is not a StateSchema subclass")
    if not attrs.has(
        cast(type, schema)
    ):  # cast: keep the StateSchema type; attrs.has would narrow it
        raise SchemaError(
            f"state schema {name} is not an attrs class: decorate it with @attrs.frozen"
        )
    # attrs marks frozen classes only by installing its own __setattr__.
    if getattr(schema.__setattr__, "__name__", "") != "_frozen_setattrs":
        raise SchemaError(
            f"state schema {name} is not frozen: decorate it with @attrs.frozen, "
            "because saved checkpoints must never change"
        )
    update_type = _update_type_of(schema)
    update_classes = _runtime_classes(update_type, name)
    reducers: dict[str, Callable[[Any, Any], Any]] = {}
    for a in attrs.fields(cast(type, schema)):
        reducer = a.metadata.get(REDUCER_KEY, replace)
        reducers[a.name] = reducer
    field_names = frozenset(reducers)
    derived = schema.apply is StateSchema.apply
    if derived:
        for cls in update_classes:
            if not attrs.has(cls):
                raise SchemaError(
                    f"state schema {name} derives apply() from its fields, so its update "
                    f"type {cls.__qualname__} must be an attrs class whose fields mirror "
                    f"{name}'s fields; make it one, or define {name}.apply()"
                )
            for fname in _update_field_names(cls):
                if fname not in field_names:
                    raise SchemaError(
                        f"update field {cls.__qualname__}.{fname} has no field of the same name "
                        f"in state schema {name} (its fields: {sorted(field_names)}); rename it, "
                        f"or define {name}.apply()"
                    )
            _check_replaced_types(schema, cls, reducers)
    return SchemaInfo(
        schema=schema,
        update_type=update_type,
        update_classes=update_classes,
        reducers=types.MappingProxyType(reducers),
        derived_apply=derived,
        field_names=field_names,
        init_fields=tuple((a.name, a.alias) for a in attrs.fields(cast(type, schema)) if a.init),
        plain_update_classes=frozenset(
            cls
            for cls in update_classes
            if not issubclass(cls, list | tuple | Goto | Interrupt | types.NoneType)
        ),
    )


def _check_replaced_types(
    schema: type, update_class: type, reducers: Mapping[str, Callable[[Any, Any], Any]]
) -> None:
    """Refuse an update field that the derived ``apply`` puts into the state field of its
    name (the default reducer, ``replace``) when its values clearly cannot be that field's:
    mypy does not relate the two classes. Judged only where both are classes or unions of
    classes (``int`` fits ``float``, as for mypy); anything else is left alone."""
    try:
        state_hints = typing.get_type_hints(schema)
        update_hints = typing.get_type_hints(update_class)
    except (NameError, TypeError):  # names only the module's own code can resolve
        return
    for fname in _update_field_names(update_class):
        if reducers.get(fname) is not replace or fname not in state_hints:
            continue
        given_types = [m for m in _members(update_hints[fname]) if not _is_unset_member(m)]
        wanted_types = _members(state_hints[fname])
        given = [m for m in given_types if isinstance(m, type)]
        wanted = [m for m in wanted_types if isinstance(m, type)]
        if len(given) < len(given_types) or len(wanted) < len(wanted_types):
            continue
        misfit = [
            m
            for m in given
            if not any(issubclass(m, w) or (m is int and w is float) for w in wanted)
        ]
        if misfit:
            raise SchemaError(
                f"update field {update_class.__qualname__}.{fname} is typed "
                f"{' | '.join(map(type_name, given))}, but it replaces {schema.__qualname__}."
                f"{fname}, typed {type_name(state_hints[fname])}, which cannot hold a value of "
                f"{', '.join(type_name(m) for m in misfit)}: make the types agree, give the "
                f"field another reducer, or define {schema.__qualname__}.apply()"
            )


def _members(tp: object) -> tuple[object, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return (tp,)


def _is_unset_member(tp: object) -> bool:
    return typing.get_origin(tp) is Literal and all(
        a is _UnsetType.UNSET for a in typing.get_args(tp)
    )


@functools.cache
def _update_field_names(update_class: type) -> tuple[str, ...]:
    return tuple(a.name for a in attrs.fields(update_class))


def _update_type_of(schema: type) -> object:
    for klass in schema.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is StateSchema:
                (arg,) = typing.get_args(base)
                if isinstance(arg, typing.TypeVar):
                    break
                return arg
    raise SchemaError(
        f"state schema {schema.__qualname__} does not name its update type: "
        f"derive it from StateSchema[YourUpdate]"
    )


def _runtime_classes(tp: object, schema_name: str) -> tuple[type, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        out: list[type] = []
        for arg in typing.get_args(tp):
            out.extend(_runtime_classes(arg, schema_name))
        return tuple(out)
    if isinstance(tp, type):
        return (tp,)
    if isinstance(origin, type):
        return (origin,)
    raise SchemaError(
        f"the update type {tp!r} of state schema {schema_name} is not a class or a union "
        "of classes; use an attrs class"
    )
