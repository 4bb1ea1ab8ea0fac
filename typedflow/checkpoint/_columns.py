"""DuckDB column types for Python types, and the conversions between the two.

Each Python type becomes a :class:`Column`: the DuckDB type it is stored as,
the type it is read back as, and functions that turn typedflow's plain data
(see :mod:`typedflow._serde`) into values DuckDB accepts and back. Typed
columns are used wherever they are faithful:

============================================  =====================================
Python                                        DuckDB
============================================  =====================================
bool, int, float, str, bytes                  BOOLEAN, BIGINT, DOUBLE, VARCHAR, BLOB
datetime (timezone-aware), date, time         TIMESTAMPTZ, DATE, TIME
timedelta, Decimal                            INTERVAL, VARCHAR (exact text)
Enum, Literal                                 the values' type (VARCHAR, BIGINT, BOOLEAN)
X | None                                      X (NULL for None)
tuple[X, ...], list[X], frozenset[X], set[X]  X[]
dict[K, V]                                    MAP(K, V)
attrs class                                   STRUCT(field type, ...)
============================================  =====================================

Anything else (a union of attrs classes, a union of different scalar types, a
tuple of fixed length, a recursive class) is stored as JSON text.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs

from typedflow.errors import SerializationError

__all__ = ["Column", "column_for", "quote", "to_json"]


def quote(name: str) -> str:
    """A DuckDB identifier, double-quoted (names come from code: classes and fields)."""
    return '"' + name.replace('"', '""') + '"'


def _same(value: Any) -> Any:
    return value


@attrs.frozen
class Column:
    """How one Python type is stored in DuckDB."""

    sql: str
    """The DuckDB type it is stored as."""
    read_sql: str
    """The DuckDB type it is read back as (TIMESTAMPTZ is read as UTC TIMESTAMP)."""
    encode: Callable[[Any], Any]
    """Plain data to JSON data that DuckDB casts to ``wire_sql``."""
    decode: Callable[[Any], Any]
    """A fetched DuckDB value to plain data."""
    is_json: bool = False
    """True when the value is stored as JSON text."""
    plain: bool = False
    """True when ``encode`` and ``decode`` are both the identity (nothing to convert)."""
    fields: Mapping[str, Column] | None = None
    """For a STRUCT: its fields' columns."""
    item: Column | None = None
    """For a LIST: its items' column."""
    nullable: bool = False
    """True when None is a value of the type (so a NULL is not a missing field)."""
    wire_sql: str = attrs.field(
        default=attrs.Factory(lambda self: self.sql, takes_self=True), kw_only=True
    )
    """The DuckDB type of the value as written: ``encode`` makes JSON data, which DuckDB casts
    to this type and then to ``sql`` (BLOB and JSON travel as VARCHAR text)."""


def _scalar(
    sql: str,
    read_sql: str | None = None,
    encode: Callable[[Any], Any] = _same,
    decode: Callable[[Any], Any] = _same,
    wire_sql: str | None = None,
) -> Column:
    plain = encode is _same and decode is _same
    return Column(sql, read_sql or sql, encode, decode, plain=plain, wire_sql=wire_sql or sql)


def _encode_datetime(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise _wrong(value, "a datetime")
    if value.tzinfo is dt.UTC:  # the usual case: every UTC datetime is in range
        return value.isoformat()
    if value.tzinfo is None:
        raise ValueError(
            f"the datetime {value!r} has no timezone; DuckDB stores datetimes as TIMESTAMPTZ: "
            "use timezone-aware datetimes, such as datetime.now(UTC)"
        )
    try:
        value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(
            f"the datetime {value!r} is outside the range of datetimes in UTC, which is how "
            "DuckDB stores it and how it would be loaded"
        ) from None
    return value.isoformat()


_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


# DuckDB's casts from JSON are lenient (1.5 becomes 2, 1 becomes '1'), so the encoders check
# each value's type: a value of the wrong type fails its save, naming its path, instead of
# being stored changed.
def _wrong(value: Any, expected: str) -> ValueError:
    return ValueError(f"expected {expected}, got {value!r} of type {type(value).__qualname__}")


def _encode_int(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, int):
        raise _wrong(value, "an int")
    if not _BIGINT_MIN <= value <= _BIGINT_MAX:
        raise ValueError(f"{value!r} is out of the range of DuckDB's BIGINT (64 bits)")
    return int(value)


def _encode_float(value: Any) -> Any:
    if value is None or type(value) is float:
        return value
    if not isinstance(value, int | float):
        raise _wrong(value, "a float")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is out of the range of a float") from None


def _encode_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise _wrong(value, "a str")


def _encode_bool(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    raise _wrong(value, "a bool")


def _encode_date(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise _wrong(value, "a date")
    return value.isoformat()


def _encode_iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _encode_interval(value: Any) -> Any:
    if value is None:
        return None
    return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"


def _encode_blob(value: Any) -> Any:
    # DuckDB casts VARCHAR to BLOB reading \xHH escapes; JSON text cannot hold raw bytes.
    if value is None:
        return None
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02X}" for b in bytes(value))


def _decode_datetime(value: Any) -> Any:
    return None if value is None else value.replace(tzinfo=dt.UTC)


def _encode_decimal(value: Any) -> Any:
    return None if value is None else str(value)


_SCALAR_COLUMNS: dict[type, Column] = {
    bool: _scalar("BOOLEAN", encode=_encode_bool),
    int: _scalar("BIGINT", encode=_encode_int),
    float: _scalar("DOUBLE", encode=_encode_float),
    str: _scalar("VARCHAR", encode=_encode_str),
    bytes: _scalar("BLOB", encode=_encode_blob, wire_sql="VARCHAR"),
    dt.datetime: _scalar("TIMESTAMPTZ", "TIMESTAMP", _encode_datetime, _decode_datetime),
    dt.date: _scalar("DATE", encode=_encode_date),
    dt.time: _scalar("TIME", encode=_encode_iso),
    dt.timedelta: _scalar("INTERVAL", encode=_encode_interval),
    Decimal: _scalar("VARCHAR", encode=_encode_decimal),
}


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, frozenset | set):
        return list(value)
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


def to_json(value: object) -> str:
    """Plain data as JSON text (datetimes as ISO text, bytes as base64)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=True)


def _from_json(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _encode_json(value: Any) -> Any:
    return None if value is None else to_json(value)


JSON_COLUMN = Column("JSON", "VARCHAR", _encode_json, _from_json, is_json=True, wire_sql="VARCHAR")
"""A value stored as JSON text."""


def _union_args(tp: object) -> tuple[object, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def column_for(
    tp: object,
    *,
    skip: Callable[[object], bool] = lambda _: False,
    _seen: frozenset[int] = frozenset(),
) -> Column:
    """The column for a Python type (``skip`` drops union members such as ``Unset``)."""
    args = _union_args(tp)
    if args is not None:
        members = [a for a in args if a is not type(None) and not skip(a)]
        nullable = len(members) < len(args) and type(None) in args
        column = (
            column_for(members[0], skip=skip, _seen=_seen) if len(members) == 1 else JSON_COLUMN
        )
        return attrs.evolve(column, nullable=nullable) if nullable else column
    if typing.get_origin(tp) is typing.Annotated:
        return column_for(typing.get_args(tp)[0], skip=skip, _seen=_seen)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return _values_column([m.value for m in tp])
        for cls, column in _SCALAR_COLUMNS.items():
            if tp is cls:
                return column
        if tp is bool or issubclass(tp, bool):
            return _SCALAR_COLUMNS[bool]
        if attrs.has(tp):
            return _struct(tp, _seen)
    origin = typing.get_origin(tp)
    targs = typing.get_args(tp)
    if origin is Literal:
        return _values_column(list(targs))
    if origin in (list, frozenset, set, Sequence, typing.Sequence) or (
        origin is tuple and len(targs) == 2 and targs[1] is Ellipsis
    ):
        return _list(column_for(targs[0], _seen=_seen))
    if origin in (dict, Mapping, typing.Mapping):
        key = column_for(targs[0], _seen=_seen)
        if key.is_json:
            return JSON_COLUMN
        return _map(key, column_for(targs[1], _seen=_seen))
    return JSON_COLUMN


def _values_column(values: list[Any]) -> Column:
    """The column of a ``Literal``'s or an ``Enum``'s values. A value of the plain kinds
    (text, numbers, booleans) that is not one of them fails its save: the converter would
    refuse to load it, and the thread could then not be loaded at all."""
    kinds = {type(v) for v in values}
    column = JSON_COLUMN
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind in (str, int, bool, float):
            column = _SCALAR_COLUMNS[kind]
    if not kinds <= {str, int, bool, float}:
        return column  # members of an Enum in a Literal, say: dumped otherwise
    # With its kind: 1 == True, but Literal[1] does not admit True.
    allowed = frozenset((_kind(v), v) for v in values)
    shown = ", ".join(map(repr, values))
    encode_value = column.encode

    def encode(value: Any) -> Any:
        if value is not None:
            try:
                known = (_kind(value), value) in allowed
            except TypeError:  # unhashable, so none of them
                known = False
            if not known:
                raise ValueError(f"expected one of {shown}, got {value!r}")
        return encode_value(value)

    return attrs.evolve(column, encode=encode, plain=False)


def _kind(value: Any) -> type:
    """The plain type a value is an instance of (a StrEnum's member is a str)."""
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return kind
    return type(value)


def _list(item: Column) -> Column:
    if item.plain:

        def encode(value: Any) -> Any:
            return None if value is None else list(value)

        return Column(
            f"{item.sql}[]",
            f"{item.read_sql}[]",
            encode,
            _same,
            item=item,
            wire_sql=f"{item.wire_sql}[]",
        )

    def encode_items(value: Any) -> Any:
        return None if value is None else [item.encode(v) for v in value]

    def decode_items(value: Any) -> Any:
        return None if value is None else [item.decode(v) for v in value]

    return Column(
        f"{item.sql}[]",
        f"{item.read_sql}[]",
        encode_items,
        # Items read as they are (text, say, whose encoding checks its type) need no pass.
        _same if item.decode is _same else decode_items,
        item=item,
        wire_sql=f"{item.wire_sql}[]",
    )


def _map_key(value: Any) -> str:
    # JSON object keys are text; DuckDB casts them to the MAP's key type.
    return value if isinstance(value, str) else json.dumps(value)


def _map(key: Column, value: Column) -> Column:
    def encode(data: Any) -> Any:
        if data is None:
            return None
        return {_map_key(key.encode(k)): value.encode(v) for k, v in data.items()}

    def decode(data: Any) -> Any:
        if data is None:
            return None
        return {key.decode(k): value.decode(v) for k, v in data.items()}

    return Column(
        f"MAP({key.sql}, {value.sql})",
        f"MAP({key.read_sql}, {value.read_sql})",
        encode,
        decode,
        wire_sql=f"MAP({key.wire_sql}, {value.wire_sql})",
    )


def _struct(cls: type, seen: frozenset[int]) -> Column:
    if id(cls) in seen or not attrs.fields(cls):
        return JSON_COLUMN  # a recursive or empty class has no finite STRUCT type
    hints = typing.get_type_hints(cls)
    inner = seen | {id(cls)}
    fields = {a.name: column_for(hints.get(a.name, a.type), _seen=inner) for a in attrs.fields(cls)}
    return struct_column(fields)


def struct_column(fields: Mapping[str, Column]) -> Column:
    """A STRUCT column of the given fields."""
    sql = "STRUCT(" + ", ".join(f"{quote(n)} {c.sql}" for n, c in fields.items()) + ")"
    read_sql = "STRUCT(" + ", ".join(f"{quote(n)} {c.read_sql}" for n, c in fields.items()) + ")"
    wire_sql = "STRUCT(" + ", ".join(f"{quote(n)} {c.wire_sql}" for n, c in fields.items()) + ")"
    names = tuple(fields)
    columns = tuple(fields.values())
    decoders = tuple((n, c.decode) for n, c in fields.items() if c.decode is not _same)

    def encode(data: Any) -> Any:
        if data is None:
            return None
        # Every key is present: DuckDB would otherwise infer a narrower STRUCT.
        return {n: c.encode(data.get(n)) for n, c in zip(names, columns, strict=True)}

    def decode(data: Any) -> Any:
        if data is None:
            return None
        if None not in data.values():
            # The usual value, with every field (DuckDB reads a STRUCT with the fields of
            # its type, which are the column's): only those that need it are converted.
            if not decoders:
                return data
            out = dict(data)
            for n, field_decode in decoders:
                out[n] = field_decode(out[n])
            return out
        # A NULL in a field that cannot be None is a field added after the row was
        # written: leave it out so that loading uses the field's default.
        return {
            n: c.decode(data[n])
            for n, c in zip(names, columns, strict=True)
            if n in data and (data[n] is not None or c.nullable)
        }

    return Column(sql, read_sql, encode, decode, fields=dict(fields), wire_sql=wire_sql)


def encode_checked(column: Column, value: Any, path: str) -> Any:
    """``column.encode(value)``, with a failure raised as SerializationError naming the path
    of the part that failed (``path`` or a field or item inside it)."""
    try:
        return column.encode(value)
    except (TypeError, ValueError) as exc:
        where = _failing_part(column, value, path)
        raise SerializationError(f"cannot store {where}: {exc}", path=where) from exc


def parts_of(column: Column, value: Any, path: str) -> list[tuple[str, Column, Any]]:
    """The fields of a STRUCT value or the items of a LIST value, each with its path and column."""
    if column.fields is not None and isinstance(value, Mapping):
        return [(f"{path}.{n}", c, value.get(n)) for n, c in column.fields.items()]
    if column.item is not None and isinstance(value, Sequence) and not isinstance(value, str):
        return [(f"{path}[{i}]", column.item, v) for i, v in enumerate(value)]
    return []


def _failing_part(column: Column, value: Any, path: str) -> str:
    for part_path, part_column, part in parts_of(column, value, path):
        try:
            part_column.encode(part)
        except (TypeError, ValueError):
            return _failing_part(part_column, part, part_path)
    return path
