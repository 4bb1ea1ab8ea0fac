"""Serialization, in one place: the cattrs converter and the checks around it.

``Serde(schema)`` turns states, updates and checkpoints into *plain data*
(dicts, lists, str, int, float, bool, None, plus ``bytes``, ``datetime`` and
``date`` kept as Python objects, which every backend stores natively) and back.
The round trip is exact. The types a schema uses are checked when the
``Serde`` is made, so an unsupported field fails at once with its path
(``Chat.messages[].meta``); a value that cannot be loaded fails with the path
of the value (``state.messages[3].role``), never as a silent dict.

Users may pass their own ``cattrs.Converter`` (with their own hooks);
typedflow adds its hooks (for :data:`~typedflow.UNSET` and for unions of attrs
classes, which are tagged with ``_type``) to it.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import functools
import threading
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Any, Final, Generic, Literal, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.strategies import configure_tagged_union

from typedflow._typing import S, type_name
from typedflow.checkpoint.base import Checkpoint, NodeFailure, NodeWrite, ParentRef
from typedflow.errors import SchemaError, SerializationError
from typedflow.schema import UNSET, _UnsetType, schema_info

__all__ = ["Serde", "is_immutable_type", "is_unset_type", "make_converter"]

TAG: Final = "_type"
"""The key that names the class of a value whose declared type is a union of attrs classes."""

_SCALARS: Final = (
    str,
    int,
    float,
    bool,
    bytes,
    type(None),
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    Decimal,
)


def make_converter() -> cattrs.Converter:
    """A new converter configured the way typedflow stores values (see the module doc)."""
    # Sets and tuples (``tuple[int, str]`` too) become lists, so plain data is JSON-shaped.
    conv = cattrs.Converter(
        detailed_validation=True, unstruct_collection_overrides={AbstractSet: list, tuple: list}
    )
    _install(conv)
    return conv


def _install(conv: cattrs.Converter) -> None:
    for scalar in (dt.datetime, dt.date, dt.time, dt.timedelta, bytes):
        conv.register_unstructure_hook(scalar, _identity)
    conv.register_structure_hook(dt.datetime, _structure_datetime)
    conv.register_structure_hook(dt.date, _structure_date)
    conv.register_structure_hook(dt.time, _structure_time)
    conv.register_structure_hook(dt.timedelta, _structure_timedelta)
    conv.register_structure_hook(bytes, _structure_bytes)
    conv.register_structure_hook(Decimal, _structure_decimal)
    # cattrs would convert any value with str(), int(), float() or bool(), so a corrupted
    # value would load silently ('{...}' as a name, "no" as True, 7.5 as 7).
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook_func(_is_scalar_union, _structure_scalar_union)
    conv.register_unstructure_hook_factory(_has_unset, _unset_unstructure_factory(conv))
    conv.register_structure_hook_factory(_has_unset, _unset_structure_factory(conv))


def _identity(value: object) -> object:
    return value


def _taken(value: object, _: object) -> object:
    return value


def _structure_str(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a str, got {type(value).__qualname__}")


def _structure_int(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an int, got {type(value).__qualname__}")


def _structure_float(value: object, _: object) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # JSON writes 1.0 as 1 at times
        return float(value)
    raise TypeError(f"expected a float, got {type(value).__qualname__}")


def _structure_bool(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a bool, got {type(value).__qualname__}")


_PLAIN_SCALARS: Final = (bool, str, int, float)
"""The scalars a union may mix: plain data keeps which one a value is (JSON text too)."""


def _is_scalar_union(tp: object) -> bool:
    """A union of several of ``str``, ``int``, ``float``, ``bool`` (and maybe None)."""
    args = _union_args(tp)
    if args is None:
        return False
    members = [a for a in args if a is not type(None)]
    return len(members) > 1 and all(any(a is k for k in _PLAIN_SCALARS) for a in members)


def _structure_scalar_union(value: object, tp: object) -> object:
    """A value of a union of scalars: the member the value is (an int for ``float | str``
    is a float, as JSON may write 1.0 as 1). cattrs has no hook for such a union."""
    args = _union_args(tp) or ()
    if value is None and type(None) in args:
        return None
    for kind in _PLAIN_SCALARS:  # bool first: a bool is an int too
        if isinstance(value, kind):
            if kind in args:
                return value
            if kind is int and float in args:
                return float(value)
            break
    names = " | ".join("None" if a is type(None) else getattr(a, "__name__", repr(a)) for a in args)
    raise TypeError(f"expected {names}, got {type(value).__qualname__}")


_SCALAR_HOOKS: Final = (_structure_str, _structure_int, _structure_float, _structure_bool)


def _is_scalar_subclass(tp: object) -> bool:
    """An enum, or a subclass of ``str``, ``int``, ``float`` or ``bool`` (not one of them)."""
    return (
        isinstance(tp, type)
        and tp not in (str, int, float, bool)
        and (issubclass(tp, enum.Enum) or issubclass(tp, str | int | float))
    )


def _subclass_hook(tp: type[Any]) -> Callable[[object, object], object]:
    """The structure hook of an enum (its member of the stored value) or of a subclass of a
    scalar (the stored value, checked as the scalar is, made an instance of the class)."""
    if issubclass(tp, enum.Enum):

        def structure_enum(value: object, _: object) -> object:
            try:
                member = tp(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a value of {tp.__qualname__}") from None
            # Enum lookup compares by ==, and True == 1: a bool is no member's int value.
            if isinstance(value, bool) != isinstance(member.value, bool):
                raise ValueError(f"{value!r} is not a value of {tp.__qualname__}")
            return member

        return structure_enum
    scalar = next(s for s in (str, int, float) if issubclass(tp, s))  # bool has no subclasses
    check = {str: _structure_str, int: _structure_int, float: _structure_float}[scalar]

    def structure_subclass(value: object, _: object) -> object:
        return tp(check(value, scalar))

    return structure_subclass


def _structure_datetime(value: object, _: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    raise TypeError(f"expected a datetime, got {type(value).__qualname__}")


def _structure_date(value: object, _: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    raise TypeError(f"expected a date, got {type(value).__qualname__}")


def _structure_time(value: object, _: object) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        return dt.time.fromisoformat(value)
    raise TypeError(f"expected a time, got {type(value).__qualname__}")


def _structure_timedelta(value: object, _: object) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):  # seconds, inside JSON text
        return dt.timedelta(seconds=value)
    raise TypeError(f"expected a timedelta, got {type(value).__qualname__}")


def _structure_bytes(value: object, _: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # bytes inside JSON text are base64
        return base64.b64decode(value, validate=True)
    raise TypeError(f"expected bytes, got {type(value).__qualname__}")


def _structure_decimal(value: object, _: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):  # stored as its exact text
        return Decimal(value)
    raise TypeError(f"expected a Decimal, got {type(value).__qualname__}")


def _union_args(tp: object) -> tuple[object, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def is_unset_type(tp: object) -> bool:
    """True for the type of :data:`~typedflow.UNSET` (as a class or as its Literal)."""
    return _is_unset(tp)


def _is_unset(tp: object) -> bool:
    return tp is _UnsetType or (
        typing.get_origin(tp) is Literal and typing.get_args(tp) == (UNSET,)
    )


def _has_unset(tp: object) -> bool:
    args = _union_args(tp)
    return args is not None and any(_is_unset(a) for a in args)


def _without_unset(tp: object) -> object:
    rest = tuple(a for a in _union_args(tp) or () if not _is_unset(a))
    return functools.reduce(lambda a, b: a | b, rest) if len(rest) > 1 else rest[0]  # type: ignore[operator]  # members of a typing union support |


def _unset_unstructure_factory(conv: cattrs.Converter) -> Any:
    def factory(tp: object) -> Any:
        inner = conv.get_unstructure_hook(_without_unset(tp))

        def unstructure(value: object) -> object:
            # An UNSET update field is stored as a missing key (see Serde.dump_update).
            return UNSET if value is UNSET else inner(value)

        return unstructure

    return factory


def _unset_structure_factory(conv: cattrs.Converter) -> Any:
    def factory(tp: object) -> Any:
        rest = _without_unset(tp)
        inner = conv.get_structure_hook(rest)

        def structure(value: object, _: object) -> object:
            return UNSET if value is UNSET else inner(value, rest)

        return structure

    return factory


def _attrs_union(tp: object) -> bool:
    args = _union_args(tp)
    if args is None:
        return False
    classes = [a for a in args if a is not type(None)]
    return len(classes) > 1 and all(isinstance(a, type) and attrs.has(a) for a in classes)


class Serde(Generic[S]):
    """Serializes one schema's states, updates and checkpoints to plain data and back.

    Raises:
        SchemaError: a field of the state or update type has a type typedflow
            cannot store; the message names the field path.
    """

    def __init__(self, schema: type[S], converter: cattrs.Converter | None = None) -> None:
        self.schema = schema
        self.info = schema_info(schema)
        self.converter = converter if converter is not None else make_converter()
        self._own = converter is None
        """Whether typedflow made the converter (so it holds no hooks of the user's)."""
        self._assemblers: dict[frozenset[str], Any] = {}
        if converter is not None:
            _install(self.converter)
        with _prepare_lock:
            _prepare(self.converter, schema, schema.__qualname__, {})
            _prepare(self.converter, self.info.update_type, "update", {})
        self.update_type: Any = self.info.update_type

    # -- states and updates ------------------------------------------------------------------

    def dump_state(self, state: S) -> dict[str, Any]:
        """A state as plain data (a dict of its fields)."""
        return cast("dict[str, Any]", self._dump(state, self.schema, "state"))

    def load_state(self, data: Mapping[str, Any], *, path: str = "state") -> S:
        """The state for plain data made by :meth:`dump_state`."""
        return cast("S", self._load(data, self.schema, path))

    def state_hook(self, loaded: Collection[str] = ()) -> Callable[[Any, Any], Any] | None:
        """A structure hook for states: ``hook(data, schema)`` loads plain data made by
        :meth:`dump_state`, without :meth:`load_state`'s path of the failing field (load the data
        again with :meth:`load_state` to name it), for a backend loading many states at once.

        Args:
            loaded: State fields whose values in ``data`` are loaded already (a backend may load
                a growing field's items one part at a time); the hook keeps them as they are.

        Returns:
            The hook; None when fields are ``loaded`` but the converter is the user's, whose
            hook for the state class may do more than load each field.
        """
        if not loaded:
            return self.converter.get_structure_hook(self.schema)
        if not self._own:
            return None
        key = frozenset(loaded)
        hook = self._assemblers.get(key)
        if hook is None:
            overrides = {name: override(struct_hook=_taken) for name in key}
            # The keys are field names, which mypy cannot tell from the function's options.
            hook = make_dict_structure_fn(self.schema, self.converter, **overrides)  # type: ignore[arg-type]  # see above
            self._assemblers[key] = hook
        return hook

    def callable_directly(self, loaded: Collection[str] = ()) -> bool:
        """Whether the state class itself, called with the fields of plain data as keywords,
        makes the state :meth:`state_hook` would, for data whose values have their fields'
        declared types already (as a backend's typed columns give them).

        True when the converter is typedflow's own and every field but those ``loaded``
        is a ``str``, ``int``, ``float`` or ``bool``, or one of them or None (whose hooks
        load such values as they are), and takes its name as its ``__init__`` argument.
        """
        if not self._own:
            return False
        hints = typing.get_type_hints(self.schema)
        for a in attrs.fields(self.schema):  # type: ignore[arg-type]  # schema_info() checked it is an attrs class
            if a.name in loaded:
                continue
            args = _union_args(hints[a.name]) or (hints[a.name],)
            plain = [t for t in args if t is not type(None)]
            if not a.init or a.alias != a.name or len(plain) != 1:
                return False
            if plain[0] not in (str, int, float, bool):
                return False
        return True

    def dumps_as_is(self, tp: object) -> bool:
        """Whether the converter's plain data for every value of type ``tp`` is the value
        itself, or for a tuple or list the list of its items: a backend whose encoders check
        each value's type may then skip the converter for values of ``tp``.

        True when the converter is typedflow's own and ``tp`` is a ``str``, ``int``,
        ``float`` or ``bool``, a ``tuple[X, ...]`` or ``list[X]`` of one of them or of one of
        them or None, or one of these or None (whose hooks return such values as they are,
        and make a list of a sequence's items). Members of a union typed as
        :data:`~typedflow.UNSET`'s type are left aside: an UNSET field is dumped as no value
        (see :meth:`dump_update`), not through a hook.
        """
        if not self._own:
            return False
        args = _union_args(tp)
        if args is not None:
            rest = [a for a in args if a is not type(None) and not _is_unset(a)]
            return len(rest) == 1 and _as_is(rest[0], items=True)
        return _as_is(tp, items=True)

    def dump_update(self, update: object) -> object:
        """An update as plain data: an attrs update as a dict without its UNSET fields (a
        union member tagged), an update of another type (``int``, say) as that type's data."""
        data = self._dump(update, self.update_type, "update")
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not UNSET}
        return data

    def load_update(self, data: object, *, path: str = "update") -> object:
        """The update for plain data made by :meth:`dump_update`."""
        return self._load(data, self.update_type, path)

    # -- whole checkpoints ----------------------------------------------------------------

    def dump_checkpoint(self, cp: Checkpoint[S]) -> dict[str, Any]:
        """A whole checkpoint as plain data."""
        return {
            "thread_id": cp.thread_id,
            "step": cp.step,
            "state": self.dump_state(cp.state),
            "next": list(cp.next),
            "status": cp.status,
            "writes": [self._dump_write(w) for w in cp.writes],
            "pending": [self._dump_write(w) for w in cp.pending],
            "failures": [attrs.asdict(f) for f in cp.failures],
            "reason": cp.reason,
            "duration": cp.duration,
            "created_at": cp.created_at,
            "parent": None if cp.parent is None else attrs.asdict(cp.parent),
            "metadata": dict(cp.metadata),
        }

    def load_checkpoint(self, data: Mapping[str, Any]) -> Checkpoint[S]:
        """The checkpoint for plain data made by :meth:`dump_checkpoint`."""
        where = f"checkpoint[{data.get('thread_id')!r}, step {data.get('step')!r}]"
        parent = data.get("parent")
        return Checkpoint(
            thread_id=data["thread_id"],
            step=data["step"],
            state=self.load_state(data["state"], path=f"{where}.state"),
            next=tuple(data["next"]),
            status=data["status"],
            writes=tuple(
                self._load_write(w, f"{where}.writes[{i}]") for i, w in enumerate(data["writes"])
            ),
            pending=tuple(
                self._load_write(w, f"{where}.pending[{i}]") for i, w in enumerate(data["pending"])
            ),
            failures=tuple(NodeFailure(**f) for f in data["failures"]),
            reason=data["reason"],
            duration=data["duration"],
            created_at=_structure_datetime(data["created_at"], None),
            parent=None if parent is None else ParentRef(**parent),
            metadata=data["metadata"],
        )

    def _dump_write(self, w: NodeWrite[object]) -> dict[str, Any]:
        return {
            "node": w.node,
            "updates": [self.dump_update(u) for u in w.updates],
            "goto": None if w.goto is None else list(w.goto),
            "duration": w.duration,
        }

    def _load_write(self, data: Mapping[str, Any], path: str) -> NodeWrite[object]:
        goto = data.get("goto")
        return NodeWrite(
            node=data["node"],
            updates=tuple(
                self.load_update(u, path=f"{path}.updates[{i}]")
                for i, u in enumerate(data["updates"])
            ),
            goto=None if goto is None else tuple(goto),
            duration=data.get("duration", 0.0),
        )

    # -- the converter with path errors -----------------------------------------------------

    def _dump(self, value: object, tp: object, path: str) -> object:
        try:
            return self.converter.unstructure(value, unstructure_as=tp)
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize {path} ({type(value).__qualname__}): {exc}", path=path
            ) from exc

    def _load(self, data: object, tp: object, path: str) -> object:
        try:
            return self.converter.structure(data, tp)  # type: ignore[arg-type]  # tp is a runtime type expression
        except Exception as exc:
            messages = cattrs.transform_error(exc, path=path)
            first = messages[0] if messages else str(exc)
            where = first.rsplit(" @ ", 1)[-1] if " @ " in first else path
            raise SerializationError(
                f"cannot load {where}: {'; '.join(messages) or exc}", path=where
            ) from exc


_AS_IS: Final = (str, int, float, bool)
"""The types whose values typedflow's converter dumps as they are (see ``dumps_as_is``)."""


def _as_is(tp: object, *, items: bool) -> bool:
    """Whether ``tp`` (not a union) is in :data:`_AS_IS`, or with ``items`` a tuple or list
    of such a type or of such a type or None."""
    if any(tp is t for t in _AS_IS):
        return True
    if not items:
        return False
    origin = typing.get_origin(tp)
    targs = typing.get_args(tp)
    is_list = origin is list and len(targs) == 1
    if not is_list and not (origin is tuple and len(targs) == 2 and targs[1] is Ellipsis):
        return False
    item = targs[0]
    args = _union_args(item)
    if args is None:
        return _as_is(item, items=False)
    rest = [a for a in args if a is not type(None)]
    return len(rest) == 1 and len(args) == 2 and _as_is(rest[0], items=False)


_prepare_lock = threading.Lock()


def _prepare(conv: cattrs.Converter, tp: object, path: str, seen: dict[int, object]) -> None:
    """Check that typedflow can store ``tp`` and register hooks it needs (tagged unions)."""
    if id(tp) in seen:
        return
    # Keyed by id (not every type is hashable), holding the type: a type made on the fly (by
    # get_type_hints, say) must outlive the walk, or a later one could reuse its id.
    seen[id(tp)] = tp
    if tp is Any or tp is object:
        raise SchemaError(
            f"{path} is typed {tp!r}: typedflow stores only typed values; "
            "give it a concrete type (an attrs class, a scalar, a tuple, ...)"
        )
    if isinstance(tp, type) and (issubclass(tp, _SCALARS) or issubclass(tp, enum.Enum)):
        # The hooks of str, int, float and bool would take their subclasses too (an IntEnum
        # is an int) and load a plain int: such a class gets a hook of its own, unless the
        # converter has one for it.
        if _is_scalar_subclass(tp) and conv.get_structure_hook(tp) in _SCALAR_HOOKS:
            conv.register_structure_hook(tp, _subclass_hook(tp))
        return
    if _is_unset(tp):
        return
    args = _union_args(tp)
    if args is not None and _has_unset(tp):
        # An update field: its values are those of the union without UNSET (see the hooks).
        _prepare(conv, _without_unset(tp), path, seen)
        return
    if args is not None:
        if (
            len([a for a in args if a is not type(None)]) > 1
            and not _attrs_union(tp)
            and not _is_scalar_union(tp)
        ):
            raise SchemaError(
                f"{path} is typed {type_name(tp)}: typedflow could not tell which member a "
                "stored value is when it loads it; use one type, a union of attrs classes "
                "(stored with a tag), or a union of str, int, float and bool"
            )
        if _attrs_union(tp):
            members = tuple(a for a in args if a is not type(None))
            union = functools.reduce(lambda a, b: a | b, members)  # type: ignore[operator]  # attrs classes support |
            # Configured on every Serde: a converter's id is no key (ids of collected converters
            # are reused), and configuring a union again on a shared converter changes nothing.
            configure_tagged_union(union, conv, tag_name=TAG)
            if len(members) < len(args):
                _configure_optional(conv, tp, union)
        for a in args:
            _prepare(conv, a, path, seen)
        return
    origin = typing.get_origin(tp)
    if origin is Literal:
        return
    if origin is typing.Annotated:
        _prepare(conv, typing.get_args(tp)[0], path, seen)
        return
    if origin in (tuple, list, frozenset, set, Sequence, typing.Sequence):
        targs = typing.get_args(tp)
        if origin is tuple and len(targs) == 2 and targs[1] is Ellipsis:
            targs = targs[:1]
        for a in targs:
            _prepare(conv, a, f"{path}[]", seen)
        return
    if origin in (dict, Mapping, typing.Mapping):
        key, val = typing.get_args(tp)
        if not _plain_key(key):
            raise SchemaError(
                f"{path} is a dict whose keys are typed {type_name(key)}: typedflow stores a "
                "dict's keys as text or numbers; key it by str, int, float, bool, an enum, a "
                "Literal, a date, datetime or time, Decimal or bytes (one type, not None)"
            )
        _prepare(conv, key, f"{path}{{key}}", seen)
        _prepare(conv, val, f"{path}{{}}", seen)
        return
    if isinstance(tp, type) and attrs.has(tp):
        hints = typing.get_type_hints(tp)
        for a in attrs.fields(tp):
            _prepare(conv, hints.get(a.name, a.type), f"{path}.{a.name}", seen)
        return
    raise SchemaError(
        f"{path} has type {tp!r}, which typedflow cannot store; use scalars, enums, "
        "Literal, attrs classes, tuple/list/frozenset, dict, or a union of these"
    )


def _plain_key(tp: object) -> bool:
    """Whether values of ``tp`` can key a stored dict: stored as text or a number, and
    hashable as they are loaded."""
    if typing.get_origin(tp) is typing.Annotated:
        return _plain_key(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Literal:
        return True
    return isinstance(tp, type) and issubclass(
        tp, (str, int, float, enum.Enum, dt.date, dt.time, Decimal, bytes)
    )


def _configure_optional(conv: cattrs.Converter, optional: object, union: object) -> None:
    """``A | B | None``: None as itself, any other value through the tagged union ``A | B``
    (cattrs would otherwise handle the optional union untagged, and fail to tell A from B)."""

    def unstructure(value: object) -> object:
        return None if value is None else conv.unstructure(value, unstructure_as=union)

    def structure(value: object, _: object) -> object:
        return None if value is None else conv.structure(value, union)  # type: ignore[arg-type]  # union is a runtime type expression

    conv.register_unstructure_hook(optional, unstructure)
    conv.register_structure_hook(optional, structure)


def is_immutable_type(tp: object) -> bool:
    """True when every value of ``tp`` is deeply immutable, so it may be shared, not copied."""
    # Keyed by id, because not every type form is hashable; the entry holds the type too, so
    # that the id cannot be reused by another object (``list[int]`` made by get_type_hints is
    # a new object each time, and freed after use) while the answer is cached.
    known = _immutable_cache.get(id(tp))
    if known is None:
        known = (tp, _immutable(tp, {}))
        _immutable_cache[id(tp)] = known
    return known[1]


_immutable_cache: dict[int, tuple[object, bool]] = {}


def _immutable(tp: object, seen: dict[int, object]) -> bool:
    if id(tp) in seen:
        return True  # a recursive reference: decided by the rest of the type
    seen[id(tp)] = tp  # held, like in _prepare
    if isinstance(tp, type) and (issubclass(tp, _SCALARS) or issubclass(tp, enum.Enum)):
        return True
    if _is_unset(tp):
        return True
    args = _union_args(tp)
    if args is not None:
        return all(_immutable(a, seen) for a in args)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return True
    if origin in (tuple, frozenset):
        return all(_immutable(a, seen) for a in typing.get_args(tp) if a is not Ellipsis)
    if isinstance(tp, type) and attrs.has(tp):
        # attrs marks frozen classes only by installing its own __setattr__.
        if getattr(tp.__setattr__, "__name__", "") != "_frozen_setattrs":
            return False
        hints = typing.get_type_hints(tp)
        return all(_immutable(hints.get(a.name, a.type), seen) for a in attrs.fields(tp))
    return False
