"""The DuckDB backend: durable checkpoints in typed tables that plain SQL can read.

Needs the ``duckdb`` extra (``pip install "typedflow[duckdb]"``). The tables
and views are a public contract, documented in ``docs/sql.md``:

- ``typedflow_threads``: one row per thread (schema name and version, creation
  time, the parent thread and step of a fork);
- ``<table>_checkpoints``: one row per step, the state as a typed STRUCT;
- ``<table>_updates``: one row per update a node returned, as a typed STRUCT;
- views ``<table>_states`` (every step's full state) and ``<table>_writes``
  (one row per node that ran in a step, with its duration);
- ``<table>_log``: checkpoints committed but not yet moved into the typed
  tables (see :data:`Durability`).

``<table>`` is the schema's class name in snake_case unless given.

Storage does not grow with the square of the run length: a top-level
``tuple``/``list`` field that only grows stores, in most rows, just the items
added in that step (the view ``<table>_states`` and every load put the full
value back together); a full copy is stored every ``snapshot_every`` steps.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import json.encoder
import logging
import operator
import re
import threading
import typing
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import compress, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeAlias

import attrs
import duckdb

from typedflow._gc import collector_paused
from typedflow._serde import Serde, is_immutable_type, is_unset_type
from typedflow._typing import S
from typedflow.checkpoint._columns import (
    Column,
    column_for,
    encode_checked,
    parts_of,
    quote,
    struct_column,
    to_json,
)
from typedflow.checkpoint._decode import (
    SharedFields,
    make_checkpoint,
    make_checkpoints,
    make_write,
    make_writes,
)
from typedflow.checkpoint._group import GroupCommit
from typedflow.checkpoint.base import (
    Checkpoint,
    HistoryCheckpointer,
    NodeFailure,
    NodeWrite,
    ParentRef,
    ThreadInfo,
    freeze_metadata,
)
from typedflow.errors import (
    CheckpointError,
    ConflictError,
    IncompatibleSchemaError,
    SchemaError,
    SerializationError,
    StepNotFoundError,
    StoreLockedError,
    ThreadNotFoundError,
)
from typedflow.schema import UNSET, schema_info

if TYPE_CHECKING:
    import cattrs

__all__ = ["DuckDBCheckpointer", "Durability"]

logger = logging.getLogger(__name__)

Durability: TypeAlias = Literal["step", "batch"]
"""When saved checkpoints are committed:

- ``"step"`` (default): ``save`` returns once the checkpoint is committed.
  Saves that arrive while a commit runs are committed together in the next one
  (group commit, by a writer thread of the checkpointer's own; ``asave`` always
  hands its checkpoint to it), so many runs on one checkpointer share commits.
  Each checkpoint is committed as one narrow row of ``<table>_log`` and moved
  into the typed tables in the background once ``batch_size`` have gathered,
  on reads, ``flush()`` and ``close()``, and when the file is next opened after
  a crash. While other saves are being committed, ``flush()`` leaves the move
  to the committing thread, which makes it when the commits pause.
- ``"batch"``: ``save`` buffers; the buffer is committed every ``batch_size``
  checkpoints, on ``flush()``, on ``close()``, and by the runner whenever a run
  stops (it ends, is interrupted or fails). A crash loses at most the
  checkpoints buffered since the last commit (fewer than ``batch_size``); a
  step is never stored in part. A process that exits without ``close()`` loses
  them too (a runner's runs commit when they stop; direct ``save()`` calls
  should end with ``flush()`` or ``close()``). ``asave`` buffers on the event
  loop without ever blocking it: while another thread holds the checkpointer (a
  commit, a read) it waits asynchronously; the save that fills the buffer
  commits it in a worker thread of the checkpointer's own, where the threads
  that runs start at once are also looked up, together.
"""

_RANGES_FROM: Final = 2 * 122_880
"""From how many checkpoint rows on reads look up the ranges of row ids a thread's rows are in
(two of DuckDB's row groups, see ``_locate``)."""

_INDEX_SCAN_MAX: Final = 256
"""Up to how many matching rows DuckDB reads through an index (see ``__init__``)."""

_MOVE_PAUSE: Final = 0.05
"""Seconds between two moves of the log by the mover thread."""

_POLL_FIRST: Final = 0.0005
_POLL_MAX: Final = 0.004
"""How often an ``asave`` under batched durability looks whether the lock is free (seconds,
doubling): a commit of a full buffer takes a few ms."""

THREADS: Final = "typedflow_threads"
"""The table of threads, shared by every schema stored in one database."""

TABLES: Final = "typedflow_tables"
"""The table recording each checkpoint table's schema and column layout."""


def _snake(name: str) -> str:
    """A table name for a class name: ``AgentState`` -> ``agent_state``,
    ``NotADoc`` -> ``not_a_doc``, ``HTTPCall`` -> ``http_call``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return words.replace(".", "_").lower()


_CREATED_AT: Final = column_for(datetime)

_FACTORY: Final[type[Any]] = type(attrs.Factory(list))
"""The class of ``attrs.Factory(...)`` (typed as the value it makes in attrs' stubs)."""

_FAILURE = "STRUCT(node VARCHAR, error_type VARCHAR, message VARCHAR, duration DOUBLE)"
_WRITE = "STRUCT(node VARCHAR, goto VARCHAR[], duration DOUBLE, updates INTEGER)"

_first = operator.itemgetter(0)
_update_order = operator.itemgetter(0, 1, 2, 3)
"""Sort keys of fetched rows: by step; updates by step, pending, position and seq."""


@contextmanager
def _mapped(action: str) -> Iterator[None]:
    """Map DuckDB's exceptions to typedflow errors, in one place, chained ``from`` the original."""
    try:
        yield
    except (duckdb.Error, UnicodeError) as exc:
        raise _mapped_error(action, exc) from exc


def _mapped_error(action: str, exc: duckdb.Error | UnicodeError) -> CheckpointError:
    """The typedflow error for an exception of DuckDB's (see :func:`_mapped`; raise it from
    ``exc``), for a caller that cannot afford a context manager."""
    if isinstance(exc, duckdb.ConstraintException):
        return CheckpointError(f"{action}: a constraint failed: {exc}")
    if isinstance(exc, duckdb.IOException):
        if "lock" in str(exc).lower():
            return StoreLockedError(
                f"{action}: the database file is in use by another process ({exc}). "
                "DuckDB lets one process write a file at a time, and a checkpointer writes "
                "(it cannot open the file read-only): close it there, or use another file"
            )
        return CheckpointError(f"{action}: {exc}")
    if isinstance(exc, duckdb.ConversionException | duckdb.InvalidInputException):
        return SerializationError(f"{action}: DuckDB could not store a value: {exc}", path="")
    if isinstance(exc, UnicodeError):
        return SerializationError(f"{action}: a string is not valid Unicode: {exc}", path="")
    return CheckpointError(f"{action}: {exc}")


@contextmanager
def _naming(cp: Checkpoint[Any]) -> Iterator[None]:
    """Name the thread and step in a serialization error about one checkpoint."""
    try:
        yield
    except SerializationError as exc:
        raise _named(cp, exc) from exc


def _named(cp: Checkpoint[Any], exc: SerializationError) -> SerializationError:
    """``exc``, about a value of ``cp``, with the thread and step named (raise it from exc)."""
    why = exc.__cause__ if exc.__cause__ is not None else exc
    return SerializationError(
        f"cannot store {exc.path} of thread {cp.thread_id!r}, step {cp.step}: {why}",
        path=exc.path,
    )


@attrs.define
class _Ticket:
    """A checkpoint waiting to be committed, and how its commit went."""

    checkpoint: Checkpoint[Any]
    fixed: dict[str, Any]
    """The encoded fields of the checkpoints row (with the growable state fields once
    :meth:`DuckDBCheckpointer._prepare` has run)."""
    state: dict[str, Any]
    """The encoded state fields, except the growable ones."""
    updates: list[dict[str, Any]]
    thread: dict[str, Any] | None = None
    """The typedflow_threads row, when the checkpoint starts a thread."""
    prepared: bool = False
    tail: _Tail | None = None
    """The thread's tail the growable fields were stored against."""
    new_tail: _Tail | None = None
    """The thread's tail once this checkpoint is stored."""
    payload: str | None = None
    """The log row's JSON (default durability)."""
    done: bool = False
    error: BaseException | None = None


@attrs.define
class _Tail:
    """A thread's last saved step and growable fields, to store the next step as a delta."""

    step: int
    values: dict[str, tuple[Any, ...]]


@attrs.define(eq=False)
class _Shared:
    """What the checkpointers of one table of one database share within this process.

    Whether a save may be written (the thread's latest step) is checked against what a
    checkpointer knows of the thread, not against the database: the log table has no key, and
    a query per save would cost about as much as the commit. A second checkpointer on the same
    table (opened on the same file, or given the same connection) must not rely on an older
    view of a thread the first one went on writing: they share that knowledge, under one lock,
    and so refuse each other's steps with a :class:`ConflictError` as one checkpointer refuses
    two runs'. Another process cannot write the file while this one has it open.
    """

    lock: threading.RLock = attrs.Factory(threading.RLock)
    """Held around each commit, read and move of the log's rows into the typed tables."""
    count_lock: threading.Lock = attrs.Factory(threading.Lock)
    move_lock: threading.Lock = attrs.Factory(threading.Lock)
    """Held by whoever moves the log; moves run one at a time."""
    latest: dict[str, int] = attrs.Factory(dict)
    """Each known thread's latest step."""
    tails: dict[str, _Tail] = attrs.Factory(dict)
    logged: int = 0
    """How many checkpoints wait in the log table to be moved into the typed tables."""
    rows: int = -1
    """About how many rows the checkpoints table holds: counted at the first open in this
    process (-1 before), then counted up as checkpoints are moved or inserted into it (not
    down: an estimate, which decides only how reads find a thread's rows, see ``_locate``)."""
    users: int = 0
    """How many open checkpointers share this."""

    @staticmethod
    def join(key: tuple[object, str]) -> _Shared:
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is None:
                shared = _SHARED[key] = _Shared()
            shared.users += 1
            return shared

    @staticmethod
    def leave(key: tuple[object, str]) -> None:
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is not None:
                shared.users -= 1
                if shared.users <= 0:
                    # Once none is open, another process may write the file: forget it all.
                    del _SHARED[key]


_SHARED: Final[dict[tuple[object, str], _Shared]] = {}
_SHARED_LOCK: Final = threading.Lock()


class DuckDBCheckpointer(HistoryCheckpointer[S]):
    """Checkpoints of schema ``S`` in a DuckDB database (a file, ``":memory:"``, or a connection).

    A read of many steps (a history, or a load whose growing fields are put back together
    from many rows) pauses Python's cyclic garbage collector while it makes the checkpoints,
    for the whole process: the collections it would set off walk every long-lived object, and
    cost a third of such a read in a process holding a few hundred thousand of them. The
    collector runs again after the read, unless the application had disabled it.

    Args:
        schema: The state schema.
        database: A file path, ``":memory:"``, or an open ``duckdb`` connection
            (used through a cursor of its own; not closed by :meth:`close`).
        table: The table name prefix; the schema's name in snake_case by default.
        durability: ``"step"`` or ``"batch"``; see :data:`Durability`.
        batch_size: For ``"batch"``: commit after this many buffered checkpoints; for
            ``"step"``: move the log into the typed tables after this many.
        snapshot_every: Store growable fields in full every this many steps.
        converter: A cattrs converter with your own hooks (typedflow adds its own).

    Raises:
        StoreLockedError: the file is in use by another process.
        IncompatibleSchemaError: the stored tables do not fit the schema (names the field).
        SchemaError: the schema has a field typedflow cannot store.
    """

    def __init__(
        self,
        schema: type[S],
        database: str | Path | duckdb.DuckDBPyConnection = ":memory:",
        *,
        table: str | None = None,
        durability: Durability = "step",
        batch_size: int = 256,
        snapshot_every: int = 100,
        converter: cattrs.Converter | None = None,
    ) -> None:
        if durability not in ("step", "batch"):
            raise ValueError(f"durability must be 'step' or 'batch', got {durability!r}")
        if batch_size < 1 or snapshot_every < 1:
            raise ValueError("batch_size and snapshot_every must be at least 1")
        self._schema = schema
        self._info = schema_info(schema)
        self._serde: Serde[S] = Serde(schema, converter)
        self._durability = durability
        self._batch_size = batch_size
        self._snapshot_every = snapshot_every
        self._table = table if table is not None else _snake(schema.__qualname__)
        self._cp_table = quote(f"{self._table}_checkpoints")
        self._up_table = quote(f"{self._table}_updates")
        self._log_table = quote(f"{self._table}_log")
        self._mover: threading.Thread | None = None
        self._mover_con: duckdb.DuckDBPyConnection | None = None
        self._move_wanted = threading.Event()
        self._stopping = threading.Event()
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._worker_closed = False
        self._worker_lock = threading.RLock()
        """Guards the worker and the lookups below."""
        self._to_look_up: set[str] = set()
        """Threads whose first ``asave`` waits for them to be looked up (batched durability)."""
        self._look_up_job: concurrent.futures.Future[None] | None = None
        self._plan_columns()
        self._owns = not isinstance(database, duckdb.DuckDBPyConnection)
        with _mapped(f"cannot open the DuckDB database {str(database)!r}"):
            if isinstance(database, duckdb.DuckDBPyConnection):
                self._con = database.cursor()
            else:
                self._con = duckdb.connect(str(database))
            # TIMESTAMPTZ values are read as UTC timestamps; the setting is this cursor's own.
            self._con.execute("SET TimeZone = 'UTC'")
            # DuckDB reads through an index any match of up to 2,048 rows, fetching them one by
            # one (about 4 µs each): a thread of 1,000 steps took 4.7 ms where scanning its
            # 12,000-row table took 1 ms. A few hundred rows (or 0.1% of the table, DuckDB's
            # other threshold) are found faster through the index than by a scan.
            self._con.execute(f"SET SESSION index_scan_max_count = {_INDEX_SCAN_MAX}")
            key = self._store_key(database)
        self._shared = _Shared.join(key)
        self._release = weakref.finalize(self, _Shared.leave, key)
        """Leaves the shared state: at :meth:`close`, or when this object is collected unclosed."""
        self._lock = self._shared.lock
        self._count_lock = self._shared.count_lock
        self._move_lock = self._shared.move_lock
        self._log_con: duckdb.DuckDBPyConnection | None = None
        """The cursor the log is written through (see :meth:`_log_appender`)."""
        self._appender: duckdb.Appender | None = None
        self._group: GroupCommit[_Ticket] = GroupCommit(
            self._commit_group,
            self._move_when_idle,
            self._lock,
            name=f"typedflow {self._table} commits",
        )
        self._buffer: list[_Ticket] = []
        self._prepared = _Prepared()
        self._latest = self._shared.latest
        self._tails = self._shared.tails
        self._absent: set[str] = set()
        """Threads looked up and not stored: of the batch being committed (see
        :meth:`_look_up`), or, under batched durability, whose first ``asave`` comes."""
        self._others: dict[str, str] = {}
        """Of those, the ones another schema uses, with its name."""
        self._closed = False
        try:
            self._create_or_check()
        except BaseException:
            self._release()
            if self._owns:
                self._con.close()
            raise

    def _store_key(self, database: str | Path | duckdb.DuckDBPyConnection) -> tuple[object, str]:
        """What names this table of this database within the process (see :class:`_Shared`):
        the database file, or for a database in memory the connection it was reached through."""
        row = self._con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchall()
        path = row[0][0] if row else None
        if path is not None:
            return (str(path), self._table)
        # A database in memory is reachable only through the connection that made it: the
        # one given, or this checkpointer's own (its ``connection``, given to another one).
        root = self._con if isinstance(database, (str, Path)) else database
        return (root, self._table)

    # -- layout ------------------------------------------------------------------------------

    def _plan_columns(self) -> None:
        hints = typing.get_type_hints(self._schema)
        fields = attrs.fields(self._schema)  # type: ignore[arg-type]  # schema_info() checked it is an attrs class
        if not fields:
            raise SchemaError(
                f"{self._schema.__qualname__} has no fields, and DuckDB stores the state as a "
                "STRUCT of its fields (there is no STRUCT of none): give the state a field"
            )
        self._fields: dict[str, Column] = {a.name: column_for(hints[a.name]) for a in fields}
        self._has_default = {a.name: a.default is not attrs.NOTHING for a in fields}
        self._defaults = {a.name: a.default for a in fields}
        self._field_types = {a.name: hints[a.name] for a in fields}
        self._growable = tuple(
            name
            for name, col in self._fields.items()
            if col.sql.endswith("[]")
            and not col.is_json
            and typing.get_origin(self._field_types[name]) in (tuple, list)
        )
        self._state_col = struct_column(self._fields)
        as_is = self._serde.dumps_as_is
        self._state_plan = tuple(
            (name, _fast_encoder(col) if as_is(self._field_types[name]) else None)
            for name, col in self._fields.items()
            if name not in self._growable
        )
        """The state fields stored in full at every step, each with its fast encoder (see
        :func:`_fast_encoder`) or None where the converter has to dump the value first."""
        self._grow_plan = tuple(
            (name, _fast_encoder(self._fields[name]) if as_is(self._field_types[name]) else None)
            for name in self._growable
        )
        """The growable fields, likewise."""
        self._direct = (
            self._serde.callable_directly(),
            self._serde.callable_directly(self._growable),
        )
        """Whether a state read is made by calling the schema itself (see
        :meth:`Serde.callable_directly`): as stored, and with its growable fields loaded."""
        update_type = self._update_type = self._info.update_type
        self._update_plan: tuple[tuple[str, Callable[[Any], Any]], ...] | None = None
        """For an attrs update class whose every field the converter dumps as it is: its
        fields, each with its fast encoder (see :meth:`_update_row`)."""
        # An update class without fields is stored as JSON, like any empty class: DuckDB has
        # no STRUCT of no fields.
        if isinstance(update_type, type) and attrs.has(update_type) and attrs.fields(update_type):
            uhints = typing.get_type_hints(update_type)
            ufields = {
                a.name: column_for(uhints[a.name], skip=is_unset_type)
                for a in attrs.fields(update_type)
            }
            self._update_col = struct_column(ufields)
            if all(as_is(uhints[name]) for name in ufields):
                self._update_plan = tuple((n, _fast_encoder(c)) for n, c in ufields.items())
        else:
            self._update_col = column_for(update_type, skip=is_unset_type)

    def _layout(self) -> dict[str, Any]:
        update_fields = self._update_col.fields
        return {
            "state": {n: c.sql for n, c in self._fields.items()},
            "update": {n: c.sql for n, c in update_fields.items()}
            if update_fields is not None
            else self._update_col.sql,
            "log": self._log_type(),
            "failures": _FAILURE,
        }

    def _create_or_check(self) -> None:
        con = self._con
        with self._lock, _mapped(f"cannot prepare the tables of {self._table!r}"):
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {THREADS} ("
                    "thread_id VARCHAR PRIMARY KEY, schema_name VARCHAR NOT NULL, "
                    "schema_version INTEGER NOT NULL, table_name VARCHAR NOT NULL, "
                    "created_at TIMESTAMPTZ NOT NULL, parent_thread_id VARCHAR, parent_step BIGINT)"
                )
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLES} ("
                    "table_name VARCHAR PRIMARY KEY, schema_name VARCHAR NOT NULL, "
                    "layout JSON NOT NULL)"
                )
                row = con.execute(
                    f"SELECT schema_name, layout FROM {TABLES} WHERE table_name = ?", [self._table]
                ).fetchone()
                layout = self._layout()
                # No key: an index update is a good part of the cost of a commit, and the
                # checks of ``_accept`` refuse a step that is stored already before anything is
                # written (checkpointers of one table in one process share what they check, see
                # ``_Shared``). A log made by an earlier version keeps its key, which only adds
                # a check.
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._log_table} ("
                    "thread_id VARCHAR NOT NULL, step BIGINT NOT NULL, payload VARCHAR NOT NULL)"
                )
                if row is None:
                    self._create_tables()
                    con.execute(
                        f"INSERT INTO {TABLES} VALUES (?, ?, ?)",
                        [self._table, self._schema.__qualname__, json.dumps(layout)],
                    )
                else:
                    stored = json.loads(row[1])
                    if "log" in stored and self._schema.__qualname__ == row[0]:
                        # Checkpoints committed to the log before a crash or an unclean exit
                        # move into the typed tables, as the layout they were written with.
                        self._move_log(stored["log"])
                    self._evolve(row[0], stored, layout)
                    if "failures" not in stored:
                        # Made before failures had durations: the field is added, NULL (None)
                        # in the rows stored so far; no row is rewritten.
                        self._add_column("checkpoints", "failures.element.duration DOUBLE")
                self._create_views()
                self._create_indexes()
                if self._shared.rows < 0:
                    row = con.execute(f"SELECT count(*) FROM {self._cp_table}").fetchone()
                    self._shared.rows = 0 if row is None else int(row[0])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _create_tables(self) -> None:
        self._con.execute(
            f"CREATE TABLE {self._cp_table} ("
            "thread_id VARCHAR NOT NULL, step BIGINT NOT NULL, schema_version INTEGER NOT NULL, "
            "status VARCHAR NOT NULL, nodes VARCHAR[] NOT NULL, next VARCHAR[] NOT NULL, "
            "reason VARCHAR, duration DOUBLE NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
            f"base BOOLEAN NOT NULL, state {self._state_col.sql} NOT NULL, "
            f"writes {_WRITE}[] NOT NULL, pending {_WRITE}[] NOT NULL, "
            f"failures {_FAILURE}[] NOT NULL, metadata JSON NOT NULL, "
            "parent_thread_id VARCHAR, parent_step BIGINT, PRIMARY KEY (thread_id, step))"
        )
        self._con.execute(
            f"CREATE TABLE {self._up_table} ("
            "thread_id VARCHAR NOT NULL, step BIGINT NOT NULL, pending BOOLEAN NOT NULL, "
            "position INTEGER NOT NULL, node VARCHAR NOT NULL, seq INTEGER NOT NULL, "
            f"value {self._update_col.sql}, unset VARCHAR[] NOT NULL)"
        )

    def _evolve(self, stored_schema: str, stored: dict[str, Any], layout: dict[str, Any]) -> None:
        """Add the fields a schema gained; refuse any other change, naming the field."""
        name = self._schema.__qualname__
        if stored_schema != name:
            raise IncompatibleSchemaError(
                f"table {self._table!r} stores schema {stored_schema!r}, not {name!r}: "
                "pass table=... to keep this schema's checkpoints apart",
                field="",
            )
        for part, column, table in (
            ("state", "state", "checkpoints"),
            ("update", "value", "updates"),
        ):
            old, new = stored[part], layout[part]
            if isinstance(old, str) or isinstance(new, str):
                if old != new:
                    raise IncompatibleSchemaError(
                        f"the {part} type of {name} changed from {old} to {new}; "
                        "stored checkpoints "
                        "cannot be loaded as the new type: use a new table= or migrate them",
                        field=part,
                    )
                continue
            for field, sql in old.items():
                if field not in new:
                    raise IncompatibleSchemaError(
                        f"field {part}.{field} was removed from {name}, "
                        "but stored checkpoints hold "
                        "it; keep the field (with a default), or use a new table=",
                        field=f"{part}.{field}",
                    )
                if new[field] != sql:
                    raise IncompatibleSchemaError(
                        f"field {part}.{field} of {name} changed type from {sql} to {new[field]}; "
                        "stored checkpoints cannot be loaded as the new type: keep the field as it "
                        "was and add a field of another name (with a default) for the new type, "
                        "or use a new table=",
                        field=f"{part}.{field}",
                    )
            for field, sql in new.items():
                if field in old:
                    continue
                if part == "state" and not self._has_default[field]:
                    raise IncompatibleSchemaError(
                        f"field state.{field} was added to {name} without a default, so stored "
                        "checkpoints cannot be loaded: give it a default",
                        field=f"state.{field}",
                    )
                self._add_column(table, f"{column}.{quote(field)} {sql}")
                ufields = self._update_col.fields
                if part == "state":
                    self._fill_default(field)
                elif ufields is not None and ufields[field].nullable:
                    # The older rows left the field UNSET, but a NULL would load as None.
                    self._con.execute(
                        f"UPDATE {self._up_table} SET unset = list_append(unset, ?)", [field]
                    )
        self._con.execute(
            f"UPDATE {TABLES} SET layout = ? WHERE table_name = ?",
            [json.dumps(layout), self._table],
        )

    def _add_column(self, kind: str, column: str) -> None:
        """``ALTER TABLE <table>_<kind> ADD COLUMN <column>``, in the open transaction; refused
        with a clear error when the table has indexes (DuckDB alters no table that an index
        depends on, and its own error does not say what to do)."""
        name = f"{self._table}_{kind}"
        indexes = [
            row[0]
            for row in self._con.execute(
                "SELECT index_name FROM duckdb_indexes() WHERE database_name = current_database() "
                "AND schema_name = current_schema() AND table_name = ? ORDER BY index_name",
                [name],
            ).fetchall()
        ]
        own = _index_name(name)
        if own in indexes:
            # Made again once the tables are ready (see _create_indexes).
            self._con.execute(f"DROP INDEX {quote(own)}")
            indexes.remove(own)
        if indexes:
            raise CheckpointError(
                f"cannot add column {column.split()[0]} to table {name!r} for "
                f"{self._schema.__qualname__}: DuckDB alters no table that has an index, and "
                f"{name!r} has {', '.join(map(repr, indexes))}, made outside typedflow. Drop "
                "them (DROP INDEX ...), open this checkpointer once, then create them again; "
                "nothing was changed"
            )
        self._con.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {column}")

    def _create_indexes(self) -> None:
        """An index on ``thread_id`` of the checkpoints and the updates, made with the tables
        (or at the first open of a file made without them: about 0.4 s for 1,000,000 rows).

        A read finds a thread's rows through them: thread ids are often random (UUIDs), so
        every row group's range of ids is wide and a scan would read the thread_id column of
        the whole table. DuckDB uses an index for ``thread_id = ?`` alone, which is how a read
        first finds the range of row ids to scan (see :meth:`_locate`)."""
        for kind in ("checkpoints", "updates"):
            name = f"{self._table}_{kind}"
            self._con.execute(
                f"CREATE INDEX IF NOT EXISTS {quote(_index_name(name))} ON {quote(name)} "
                "(thread_id)"
            )

    def _fill_default(self, name: str) -> None:
        """Store a just-added state field's default in the older rows where a NULL would not
        load as the default: an optional field (NULL is None) and a growing one (NULL is empty)."""
        column = self._fields[name]
        if not column.nullable and name not in self._growable:
            return  # a NULL loads as the default already (see struct_column)
        default = self._defaults[name]
        if isinstance(default, _FACTORY):
            if default.takes_self:
                raise IncompatibleSchemaError(
                    f"field state.{name} was added to {self._schema.__qualname__} with a default "
                    "made from the instance, which stored checkpoints cannot be given: give it "
                    "a plain default or factory",
                    field=f"state.{name}",
                )
            default = default.factory()
        plain = self._serde.converter.unstructure(default, unstructure_as=self._field_types[name])
        value = encode_checked(column, plain, f"state.{name}")
        if value is None or (name in self._growable and not value):
            return
        # Growing fields hold their full value in base rows only; the deltas after them stay empty.
        where = " WHERE base" if name in self._growable else ""
        self._con.execute(
            f"UPDATE {self._cp_table} SET state = struct_update(state, {quote(name)} := "
            f"{_cast(column)}){where}",
            [_one(value)],
        )

    def _create_views(self) -> None:
        t = self._table
        if self._growable:
            parts = []
            for name in self._fields:
                q = quote(name)
                if name in self._growable:
                    parts.append(f"{q} := flatten(list(state.{q}) OVER w)")
                else:
                    parts.append(f"{q} := state.{q}")
            state_expr = "struct_pack(" + ", ".join(parts) + ")"
            source = (
                f"(SELECT *, sum(CASE WHEN base THEN 1 ELSE 0 END) OVER "
                f"(PARTITION BY thread_id ORDER BY step) AS segment FROM {self._cp_table})"
            )
            window = (
                " WINDOW w AS (PARTITION BY thread_id, segment ORDER BY step "
                "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
            )
        else:
            state_expr, source, window = "state", self._cp_table, ""
        self._con.execute(
            f"CREATE OR REPLACE VIEW {quote(t + '_states')} AS SELECT thread_id, step, "
            f"schema_version, status, created_at, {state_expr} AS state, next, reason, metadata "
            f"FROM {source}{window}"
        )
        self._con.execute(
            f"CREATE OR REPLACE VIEW {quote(t + '_writes')} AS SELECT thread_id, step, status, "
            "created_at, (generate_subscripts(writes, 1) - 1)::INTEGER AS position, "
            f"unnest(writes, recursive := true) FROM {self._cp_table}"
        )

    # -- the contract ------------------------------------------------------------------------

    @property
    def schema(self) -> type[S]:
        return self._schema

    @property
    def table(self) -> str:
        """The table name prefix of this schema's checkpoints."""
        return self._table

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection this checkpointer uses (for read-only SQL; take its lock-free cursor)."""
        return self._con

    def save(self, checkpoint: Checkpoint[S]) -> None:
        ticket = self._ticket(checkpoint)
        if self._durability == "batch":
            with self._lock:
                self._check_open()
                try:
                    self._accept(ticket)  # conflicts are found now, not at the next flush
                except (duckdb.Error, UnicodeError) as exc:
                    # Not ``with _mapped(...)``: it costs more than the rest of a buffered save.
                    raise _mapped_error("cannot save a checkpoint", exc) from exc
                self._buffer.append(ticket)
                if len(self._buffer) >= self._batch_size:
                    self._flush_locked()
                return
        self._check_open()
        self._group.save(ticket)
        if ticket.error is not None:
            raise ticket.error

    async def asave(self, checkpoint: Checkpoint[S]) -> None:
        if self._durability == "batch":
            await self._abuffer(checkpoint)
            return
        ticket = self._ticket(checkpoint)
        self._check_open()
        await self._group.asave(ticket)  # committed by the group's writer thread
        if ticket.error is not None:
            raise ticket.error

    async def _abuffer(self, checkpoint: Checkpoint[S]) -> None:
        """:meth:`asave` under batched durability: buffer on the event loop, never wait there.

        Another thread may hold the lock for as long as DuckDB takes (committing a full
        buffer, a read, a move of the log): the save then waits by polling for it, and the
        loop runs other tasks meanwhile. What queries or writes DuckDB runs in a worker
        thread: the save that fills the buffer (it commits it), and the lookup of a thread
        this checkpointer does not know, at its first save (see :meth:`_alook_up`).
        """
        tid = checkpoint.thread_id
        if tid not in self._latest and tid not in self._absent and _is_text(tid):
            await self._alook_up(tid)
        delay = _POLL_FIRST
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)
        try:
            known = tid in self._latest or tid in self._absent
            if known and len(self._buffer) + 1 < self._batch_size:
                self.save(checkpoint)  # only buffers (the lock is reentrant)
                return
        finally:
            self._lock.release()
        await asyncio.wrap_future(self._in_worker(self.save, checkpoint))

    async def _alook_up(self, thread_id: str) -> None:
        """Look a thread up in the worker thread, with every other thread whose first save
        waits meanwhile (many runs starting at once cost one query, not one each)."""
        while thread_id not in self._latest and thread_id not in self._absent:
            with self._worker_lock:
                self._to_look_up.add(thread_id)
                job = self._look_up_job
            if job is None or job.done():
                await asyncio.sleep(0)  # the other tasks ready to run add their threads
                with self._worker_lock:
                    job = self._look_up_job
                    if job is None or job.done():
                        job = self._look_up_job = self._in_worker(self._look_up_waiting)
            await asyncio.wrap_future(job)

    def _look_up_waiting(self) -> None:
        with self._lock, _mapped("cannot save checkpoints"):
            self._check_open()
            with self._worker_lock:
                waiting, self._to_look_up = self._to_look_up, set()
            unknown = [t for t in waiting if t not in self._latest and t not in self._absent]
            if unknown:
                self._find(unknown)

    def _in_worker(self, call: Callable[..., None], *args: Any) -> concurrent.futures.Future[None]:
        """``call(*args)`` in the checkpointer's worker thread, made at first use.

        One thread for every event loop's saves: several, contending for the interpreter
        lock with the loop that runs the tasks, would each wait for it whenever DuckDB hands
        back (64 tasks saved 1.1-1.2x as many checkpoints/s as with asyncio's own pool)."""
        with self._worker_lock:
            if self._worker_closed:
                raise CheckpointError("this DuckDBCheckpointer is closed")
            if self._worker is None:
                self._worker = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"typedflow {self._table} batch"
                )
            return self._worker.submit(call, *args)

    def flush(self) -> None:
        if self._durability == "step" and self._group.when_idle():
            return  # other saves are being committed: the log is moved when they pause
        with self._lock:
            if not self._closed:
                self._flush_locked()
                self._move_log_now()

    async def aflush(self) -> None:
        if self._durability == "step":
            if self._group.when_idle() or not self._shared.logged:
                return
        elif not self._buffer:
            return
        await asyncio.wrap_future(self._in_worker(self.flush))

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self._write(batch)
        errors = [t.error for t in batch if t.error is not None]
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._group.close()  # every queued save is committed first
        self._stop_mover()
        with self._worker_lock:
            worker, self._worker, self._worker_closed = self._worker, None, True
        if worker is not None:
            worker.shutdown()  # the saves handed to it are made (or refused) first
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_locked()
                self._move_log_now()
            finally:
                self._closed = True
                self._release()
                self._appender = None
                for con in (self._mover_con, self._log_con):
                    if con is not None:
                        con.close()
                self._con.close()

    def _check_open(self, batch: Sequence[_Ticket] = ()) -> None:
        if self._closed:
            err = CheckpointError("this DuckDBCheckpointer is closed")
            for t in batch:
                t.done, t.error = True, err
            raise err

    # -- writing -----------------------------------------------------------------------------

    def _ticket(self, cp: Checkpoint[S]) -> _Ticket:
        """Encode a checkpoint in the caller's thread, outside the lock, so that a commit has
        little left to do. The growable fields are stored against the thread's tail as it is
        now; the commit checks that it still is (it is, unless two runs write one thread)."""
        # Not ``with _naming(cp)``: a context manager costs more than the rest of a small save.
        try:
            ticket = self._encode(cp)
            self._prepare(ticket, self._tails.get(cp.thread_id))
        except SerializationError as exc:
            raise _named(cp, exc) from exc
        return ticket

    def _prepare(self, ticket: _Ticket, tail: _Tail | None) -> None:
        grow, base, ticket.new_tail = self._growable_row(ticket.checkpoint, tail)
        ticket.fixed["state"] = {**ticket.state, **grow} if grow else ticket.state
        ticket.fixed["base"] = base
        ticket.tail = tail
        ticket.prepared = True
        if self._durability == "step":
            ticket.payload = _dumps({"checkpoint": ticket.fixed, "updates": ticket.updates})

    def _encode(self, cp: Checkpoint[S]) -> _Ticket:
        thread_id = cp.thread_id
        if not _is_text(thread_id):
            raise SerializationError(
                f"cannot store thread id {thread_id!r}: it is not valid Unicode text (it holds "
                "a lone surrogate), and DuckDB stores text as UTF-8",
                path="thread_id",
            )
        current = cp.state
        if not isinstance(current, self._schema):
            raise CheckpointError(
                f"this checkpointer stores {self._schema.__qualname__}, "
                f"got a state of type {type(current).__qualname__}"
            )
        state: dict[str, Any] = {}
        for name, fast in self._state_plan:
            value = getattr(current, name)
            if fast is not None:
                try:
                    state[name] = fast(value)
                    continue
                except (TypeError, ValueError):
                    pass  # encoded again the general way, which names the part that is wrong
            state[name] = self._encode_field(name, value)
        step = cp.step
        writes, pending = cp.writes, cp.pending
        updates: list[dict[str, Any]] = []
        for is_pending, ws in ((False, writes), (True, pending)) if pending else ((False, writes),):
            for position, w in enumerate(ws):
                for seq, u in enumerate(w.updates):
                    updates.append(
                        self._update_row(thread_id, step, is_pending, position, w.node, seq, u)
                    )
        nodes = [w.node for w in writes]
        if cp.status != "ok":
            # A step stopped by interrupt_before/after completed: its nodes are its writes'.
            # One that a node interrupted or failed keeps the writes of the nodes that
            # finished in ``pending``; those that failed are in ``failures``.
            nodes += [w.node for w in pending]
            nodes += [f.node for f in cp.failures]
        created = cp.created_at
        # The usual value, as _encode_datetime encodes it (every UTC datetime is in range).
        if type(created) is datetime and created.tzinfo is UTC:
            created_at = created.isoformat()
        else:
            created_at = encode_checked(_CREATED_AT, created, "created_at")
        parent = cp.parent
        fixed = {
            "thread_id": thread_id,
            "step": step,
            "schema_version": self._schema.schema_version,
            "status": cp.status,
            "nodes": nodes,
            "next": list(cp.next),
            "reason": cp.reason,
            "duration": float(cp.duration),
            "created_at": created_at,
            "state": state,
            "writes": [_write_row(w) for w in writes],
            "pending": [_write_row(w) for w in pending] if pending else [],
            "failures": [_failure_row(f) for f in cp.failures] if cp.failures else [],
            "metadata": to_json(dict(cp.metadata)) if cp.metadata else "{}",
            "parent_thread_id": None if parent is None else parent.thread_id,
            "parent_step": None if parent is None else parent.step,
        }
        return _Ticket(cp, fixed, state, updates)

    def _encode_field(self, name: str, value: object, whole: object = None) -> Any:
        """A state field's value encoded the general way: dumped by the converter, then
        encoded by its column; a failure names the field, or the part of it that failed.

        Args:
            name: The field.
            value: Its value, or for a growable field stored as a delta, the new items.
            whole: For a delta: the field's whole value, so that a failure names an item by
                its index in the state's value.
        """
        path = f"state.{name}"
        try:
            plain = self._serde.converter.unstructure(value, unstructure_as=self._field_types[name])
        except Exception as exc:
            raise SerializationError(f"cannot serialize {path}: {exc}", path=path) from exc
        try:
            return encode_checked(self._fields[name], plain, path)
        except SerializationError:
            if whole is not None:
                self._encode_field(name, whole)  # fails too, naming the item by its index
            raise

    def _update_row(
        self,
        thread_id: str,
        step: int,
        pending: bool,
        position: int,
        node: str,
        seq: int,
        update: object,
    ) -> dict[str, Any]:
        encoded = self._encode_update_fast(update)
        if encoded is None:
            path = f"{'pending' if pending else 'writes'}[{position}].updates[{seq}]"
            plain = self._serde.dump_update(update)
            unset = []
            if self._update_col.fields is not None and isinstance(plain, dict):
                unset = [n for n in self._update_col.fields if n not in plain]
            encoded = encode_checked(self._update_col, plain, path), unset
        return {
            "thread_id": thread_id,
            "step": step,
            "pending": pending,
            "position": position,
            "node": node,
            "seq": seq,
            "value": encoded[0],
            "unset": encoded[1],
        }

    def _encode_update_fast(self, update: object) -> tuple[dict[str, Any], list[str]] | None:
        """What dump_update and the column's encoder make of ``update`` (its value and unset
        fields), without the converter; None when that way does not apply or fails (the
        general way then names the part that is wrong). An UNSET field is a missing key of the
        plain data, so None in the row, and named in unset."""
        plan = self._update_plan
        if plan is None or type(update) is not self._update_type:
            return None
        value: dict[str, Any] = {}
        unset: list[str] = []
        try:
            for name, fast in plan:
                item = getattr(update, name)
                if item is UNSET:
                    value[name] = None
                    unset.append(name)
                else:
                    value[name] = fast(item)
        except (TypeError, ValueError):
            return None
        return value, unset

    def _latest_step(self, thread_id: str) -> int | None:
        step = self._latest.get(thread_id)
        if step is None and _is_text(thread_id):  # an id that is not text was never stored
            row = self._con.execute(
                f"SELECT max(step) FROM (SELECT step FROM {self._cp_table} WHERE thread_id = $1 "
                f"UNION ALL SELECT step FROM {self._log_table} WHERE thread_id = $1)",
                [thread_id],
            ).fetchone()
            step = None if row is None else row[0]
            if step is not None:
                self._latest[thread_id] = step
        return step

    def _growable_row(
        self, cp: Checkpoint[S], tail: _Tail | None
    ) -> tuple[dict[str, Any], bool, _Tail | None]:
        """The growable fields to store for ``cp`` (deltas against ``tail`` when possible),
        whether in full, and the thread's tail after it."""
        if not self._growable:
            return {}, True, None
        state = cp.state
        try:
            values = {name: tuple(getattr(state, name)) for name in self._growable}
        except TypeError:
            for name in self._growable:  # the general way fails too, naming the field
                self._encode_field(name, getattr(state, name))
            raise
        base = tail is None or tail.step != cp.step - 1 or cp.step % self._snapshot_every == 0
        if not base and tail is not None:
            for name, value in values.items():
                prev = tail.values[name]
                # Exact, as a reducer may replace any item: O(n) in the field's length, but
                # cheap (identical items compare by identity). A field the step left alone is
                # the very same tuple.
                if value is not prev and (len(value) < len(prev) or value[: len(prev)] != prev):
                    base = True
                    break
        out: dict[str, Any] = {}
        for name, fast in self._grow_plan:
            value = values[name]
            part = value if base or tail is None else value[len(tail.values[name]) :]
            if fast is not None:
                try:
                    out[name] = fast(part)
                    continue
                except (TypeError, ValueError):
                    pass  # encoded again the general way, which names the part that is wrong
            out[name] = self._encode_field(name, part, None if part is value else value)
        return out, base, _Tail(cp.step, values)

    def _look_up(self, batch: list[_Ticket]) -> None:
        """Find, in one query each, which threads of a batch are new and whether another schema
        uses their ids (instead of two queries per new thread in :meth:`_accept`)."""
        unknown = list(
            {t.checkpoint.thread_id for t in batch if t.checkpoint.thread_id not in self._latest}
        )
        self._absent.clear()
        self._others.clear()
        if len(unknown) >= 2:
            self._find(unknown)

    def _find(self, unknown: list[str]) -> None:
        """Look threads up: their latest steps, or else (in ``_absent``) that they are new,
        and (in ``_others``) which of those another schema uses. Holds the lock."""
        # One thread (a run's first save) is matched by ``=``, which DuckDB finds through the
        # index on thread_id; a list (runs starting together) by a join, which scans.
        one = len(unknown) == 1
        match, ids = ("= $1", unknown[0]) if one else ("IN (SELECT unnest($1::VARCHAR[]))", unknown)
        found = self._con.execute(
            f"SELECT thread_id, max(step) FROM (SELECT thread_id, step FROM {self._cp_table} "
            f"UNION ALL SELECT thread_id, step FROM {self._log_table}) "
            f"WHERE thread_id {match} GROUP BY thread_id",
            [ids],
        ).fetchall()
        self._latest.update(dict(found))
        new = set(unknown) - {tid for tid, _ in found}
        self._absent.update(new)
        if new:
            self._others.update(
                self._con.execute(
                    f"SELECT thread_id, schema_name FROM {THREADS} "
                    f"WHERE thread_id {match} AND table_name <> $2",
                    [ids if one else list(new), self._table],
                ).fetchall()
            )

    def _accept(self, ticket: _Ticket) -> None:
        """Check a checkpoint against its thread and finish its rows (deltas need the order)."""
        cp = ticket.checkpoint
        tid = cp.thread_id
        # Not new if another checkpointer of the table stored it since it was looked up.
        new = tid in self._absent and tid not in self._latest
        latest = None if new else self._latest_step(tid)
        if latest is None:
            other = self._others.get(tid) if new else self._other_schema(tid)
            if other is not None:
                raise CheckpointError(
                    f"thread id {tid!r} is already used by schema {other!r} in this database; "
                    "thread ids are unique within a database: pick another thread id"
                )
            ticket.thread = {
                "thread_id": tid,
                "schema_name": self._schema.__qualname__,
                "schema_version": self._schema.schema_version,
                "table_name": self._table,
                "created_at": ticket.fixed["created_at"],
                "parent_thread_id": ticket.fixed["parent_thread_id"],
                "parent_step": ticket.fixed["parent_step"],
            }
            self._tails.pop(tid, None)
        elif cp.step <= latest or cp.parent is not None:
            raise ConflictError(tid, cp.step, latest)
        elif cp.step != latest + 1:
            raise CheckpointError(
                f"thread {tid!r} is at step {latest}; the next checkpoint must be step "
                f"{latest + 1}, got step {cp.step}"
            )
        tail = self._tails.get(tid)
        if not ticket.prepared or ticket.tail is not tail:
            with _naming(cp):
                self._prepare(ticket, tail)
        if ticket.new_tail is not None:
            self._tails[tid] = ticket.new_tail
        self._latest[tid] = cp.step
        self._absent.discard(tid)

    def _not_found(self, thread_id: str) -> ThreadNotFoundError:
        """(Holding the lock.) The error for a thread this table does not hold, naming the
        schema and table that do, if another one does (looked up only on this error path)."""
        owner = self._owner(thread_id) if _is_text(thread_id) else None
        stored_by = None if owner is None else f"schema {owner[0]!r}, table {owner[1]!r}"
        return ThreadNotFoundError(thread_id, stored_by=stored_by)

    def _other_schema(self, thread_id: str) -> str | None:
        """The schema that uses ``thread_id`` in this database, if not this one."""
        owner = self._owner(thread_id)
        return None if owner is None else owner[0]

    def _owner(self, thread_id: str) -> tuple[str, str] | None:
        """The schema and table that store ``thread_id`` in this database, if not this table."""
        row = self._con.execute(
            f"SELECT schema_name, table_name FROM {THREADS} "
            "WHERE thread_id = ? AND table_name <> ?",
            [thread_id, self._table],
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def _commit_group(self, batch: list[_Ticket]) -> None:
        # The group holds self._lock.
        self._check_open(batch)
        self._commit(batch)

    def _move_when_idle(self) -> None:
        """A move that :meth:`flush` left for when the commits pause."""
        with self._lock:
            if not self._closed:
                self._move_log_now()

    def _commit(self, batch: list[_Ticket]) -> None:
        """Check a batch of concurrent saves and commit it to the log in one statement; record
        each ticket's outcome."""
        accepted: list[_Ticket] = []
        try:
            with _mapped("cannot save checkpoints"):
                self._look_up(batch)
        except CheckpointError:
            self._absent.clear()  # each checkpoint is looked up (and fails) on its own below
            self._others.clear()
        for ticket in batch:
            ticket.done = True
            try:
                with _mapped("cannot save checkpoints"):
                    self._accept(ticket)
            except Exception as exc:  # noqa: BLE001  # recorded: its own caller raises it
                ticket.error = exc
                continue
            accepted.append(ticket)
        try:
            self._write(accepted, log=True)
        except BaseException as exc:
            # Whatever went wrong, no caller of this batch may return as if it were saved.
            for ticket in accepted:
                if ticket.error is None:
                    ticket.error = exc
            raise
        if self._shared.logged >= self._batch_size and not self._move_wanted.is_set():
            self._move_soon()

    def _write(self, accepted: list[_Ticket], *, log: bool = False) -> None:
        """Write accepted checkpoints in one transaction, to the log or to the typed tables;
        on failure, none of them is stored."""
        if not accepted:
            return
        try:
            with _mapped("cannot save checkpoints"):
                if log:
                    self._append_log(accepted)
                else:
                    self._insert_typed(accepted)
        except (CheckpointError, SerializationError) as exc:
            # Nothing of the batch is stored: forget what was assumed about those threads.
            for ticket in accepted:
                self._latest.pop(ticket.checkpoint.thread_id, None)
                self._tails.pop(ticket.checkpoint.thread_id, None)
            if isinstance(exc, SerializationError) and len(accepted) > 1:
                self._write_each(accepted, log=log)
                return
            for ticket in accepted:
                ticket.error = self._explain(ticket, exc)
        else:
            if log:
                with self._count_lock:
                    self._shared.logged += len(accepted)

    def _append_log(self, accepted: list[_Ticket]) -> None:
        """Commit checkpoints as rows of the narrow log table: one short row commits as fast as
        DuckDB commits anything, where a wide row of nested columns (and the SQL text of its
        type) costs several times more. The encoders have checked every value's type and
        range, so the later move into the typed tables cannot refuse one.

        The rows go through an appender kept open, which skips the parsing, planning and
        parameter binding of an INSERT. Its flush is one statement: on its own (autocommit) it
        commits, so the rows are durable when this returns."""
        con, appender = self._log_appender()
        threads = [t.thread for t in accepted if t.thread is not None]
        try:
            for t in accepted:
                cp = t.checkpoint
                appender.append_row(
                    cp.thread_id,
                    cp.step,
                    t.payload or _dumps({"checkpoint": t.fixed, "updates": t.updates}),
                )
            if threads:
                # A new thread's row is written at once: thread ids are unique across the
                # schemas of a database, and its primary key is what says so.
                con.execute("BEGIN TRANSACTION")
                try:
                    self._insert(con, "threads", THREADS, _THREAD_ROW, threads)
                    appender.flush()
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            else:
                appender.flush()
        except BaseException:
            # Rows left buffered would be committed with the next save's: drop them, and the
            # appender with them (the next save makes a new one).
            self._drop_appender()
            raise

    def _log_appender(self) -> tuple[duckdb.DuckDBPyConnection, duckdb.Appender]:
        """The cursor the log is written through and its appender, made at the first save.

        A cursor of its own: an appender cannot flush on a connection that still holds a
        query's unread result, as the checks' queries on the main cursor may."""
        con = self._log_con
        if con is None:
            con = self._log_con = self._con.cursor()
            con.execute("SET TimeZone = 'UTC'")
        appender = self._appender
        if appender is None:
            appender = self._appender = con.appender(self._log_table)
        return con, appender

    def _drop_appender(self) -> None:
        appender, self._appender = self._appender, None
        if appender is not None:
            try:
                appender.clear()
            except duckdb.Error:
                logger.debug("could not clear the log's appender", exc_info=True)

    def _insert_typed(self, accepted: list[_Ticket]) -> None:
        threads = [t.thread for t in accepted if t.thread is not None]
        rows = [t.fixed for t in accepted]
        updates = [u for t in accepted for u in t.updates]
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            if threads:
                self._insert(con, "threads", THREADS, _THREAD_ROW, threads)
            self._insert(con, "checkpoints", self._cp_table, self._row_type(), rows)
            if updates:
                self._insert(con, "updates", self._up_table, self._update_row_type(), updates)
            con.execute("COMMIT")
            with self._count_lock:
                self._shared.rows += len(rows)
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        name: str,
        table: str,
        row_type: str,
        rows: list[dict[str, Any]],
    ) -> None:
        self._prepared.execute(
            con, f"typedflow_insert_{name}", _insert_sql(table, row_type), _lines(rows)
        )

    def _move_soon(self) -> None:
        """Have the mover thread move the log, while commits go on (it has its own cursor, and
        DuckDB lets one transaction move rows while others append to the log)."""
        if self._mover is None:
            with _mapped("cannot open a second cursor to move the log"):
                self._mover_con = self._con.cursor()
            self._mover = threading.Thread(
                target=self._move_in_background, name=f"typedflow {self._table} log", daemon=True
            )
            self._mover.start()
        self._move_wanted.set()

    def _move_in_background(self) -> None:
        con = self._mover_con
        while con is not None:
            self._move_wanted.wait()
            if self._stopping.is_set():
                return
            try:
                self._move_log_now(con)
            except CheckpointError:
                # The checkpoints are committed (in the log); the next read, flush or close
                # moves them again and reports what goes wrong.
                logger.warning("could not move the log into the typed tables", exc_info=True)
            finally:
                # Cleared after the move, not before: the saves committed while it ran set it
                # again and again, and a move of the few rows they bring would cost about as
                # much as one of ``batch_size`` (DuckDB's fixed cost per statement and commit).
                # The next move waits for the next full batch (or a read, flush or close).
                self._move_wanted.clear()
            # Under load the mover also waits for more to gather.
            if self._stopping.wait(_MOVE_PAUSE):
                return

    def _stop_mover(self) -> None:
        if self._mover is not None:
            self._stopping.set()
            self._move_wanted.set()
            self._mover.join()
            self._mover = None

    def _move_log_now(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Move the logged checkpoints into the typed tables, in one transaction."""
        with self._move_lock:
            if not self._shared.logged:
                return
            con = self._con if con is None else con
            with _mapped(
                f"cannot move the checkpoints committed to {self._log_table} into the typed "
                "tables (they stay there, and are moved at the next flush, read, close or open)"
            ):
                con.execute("BEGIN TRANSACTION")
                try:
                    moved = self._move_log(self._log_type(), con)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            with self._count_lock:
                # Never below 0: a move also takes the rows that another checkpointer of the
                # table committed before it counted them.
                self._shared.logged = max(0, self._shared.logged - moved)
                self._shared.rows += moved

    def _move_log(self, log_type: str, con: duckdb.DuckDBPyConnection | None = None) -> int:
        """Move every row of the log table (written as ``log_type``) that this transaction
        sees into the typed tables; how many."""
        x = f"(SELECT payload::JSON::{log_type} AS x FROM {self._log_table})"
        con = self._con if con is None else con
        current = log_type == self._log_type()  # an older layout is moved once, at open

        def run(name: str, sql: str) -> duckdb.DuckDBPyConnection:
            if current:
                return self._prepared.execute(con, f"typedflow_move_{name}", sql)
            return con.execute(sql)

        run(
            "checkpoints",
            f"INSERT INTO {self._cp_table} SELECT r.* FROM (SELECT x.checkpoint AS r FROM {x})",
        )
        run(
            "updates",
            f"INSERT INTO {self._up_table} SELECT r.* FROM "
            f"(SELECT unnest(x.updates) AS r FROM {x})",
        )
        row = run("delete", f"DELETE FROM {self._log_table}").fetchone()
        return 0 if row is None else int(row[0])

    def _write_each(self, accepted: list[_Ticket], *, log: bool) -> None:
        """Write a batch DuckDB refused one checkpoint at a time, so that a bad value fails only
        its own checkpoint (and the later steps of its thread, which build on it)."""
        failed: dict[str, BaseException] = {}
        for ticket in accepted:
            cp = ticket.checkpoint
            earlier = failed.get(cp.thread_id)
            if earlier is not None:
                ticket.error = CheckpointError(
                    f"step {cp.step} of thread {cp.thread_id!r} is not stored, because an "
                    f"earlier step of the thread could not be: {earlier}"
                )
                continue
            self._write([ticket], log=log)
            if ticket.error is not None:
                failed[cp.thread_id] = ticket.error

    def _explain(self, ticket: _Ticket, exc: CheckpointError) -> CheckpointError:
        if isinstance(exc, SerializationError):
            path = self._find_bad_value(ticket)
            if path:
                err = SerializationError(
                    f"cannot store {path} of thread {ticket.checkpoint.thread_id!r}, "
                    f"step {ticket.checkpoint.step}: {exc}",
                    path=path,
                )
                err.__cause__ = exc
                return err
        return exc

    def _find_bad_value(self, ticket: _Ticket) -> str:
        """Where the value DuckDB refused sits (the slow path, only after a failed save)."""
        cp = ticket.checkpoint
        conv = self._serde.converter
        for name, col in self._fields.items():
            # The full value, not a delta, so that list indexes in the path are the state's own.
            plain = conv.unstructure(
                getattr(cp.state, name), unstructure_as=self._field_types[name]
            )
            path = self._refused(col, col.encode(plain), f"state.{name}")
            if path:
                return path
        for row in ticket.updates:
            kind = "pending" if row["pending"] else "writes"
            where = f"{kind}[{row['position']}].updates[{row['seq']}]"
            path = self._refused(self._update_col, row["value"], where)
            if path:
                return path
        return ""

    def _refused(self, column: Column, value: Any, path: str) -> str:
        """The path of the innermost part of ``value`` that DuckDB refuses as ``column``, or ""."""
        try:
            self._con.execute(f"SELECT {_cast(column)}", [_one(value)])
        except (duckdb.Error, UnicodeError):
            pass
        else:
            return ""
        for part_path, part_column, part in parts_of(column, value, path):
            found = self._refused(part_column, part, part_path)
            if found:
                return found
        return path

    def _row_type(self) -> str:
        return (
            "STRUCT(thread_id VARCHAR, step BIGINT, schema_version INTEGER, status VARCHAR, "
            "nodes VARCHAR[], next VARCHAR[], reason VARCHAR, duration DOUBLE, "
            f"created_at TIMESTAMPTZ, base BOOLEAN, state {self._state_col.wire_sql}, "
            f"writes {_WRITE}[], pending {_WRITE}[], failures {_FAILURE}[], metadata VARCHAR, "
            "parent_thread_id VARCHAR, parent_step BIGINT)"
        )

    def _log_type(self) -> str:
        return f"STRUCT(checkpoint {self._row_type()}, updates {self._update_row_type()}[])"

    def _update_row_type(self) -> str:
        return (
            "STRUCT(thread_id VARCHAR, step BIGINT, pending BOOLEAN, position INTEGER, "
            f"node VARCHAR, seq INTEGER, value {self._update_col.wire_sql}, unset VARCHAR[])"
        )

    # -- reading -----------------------------------------------------------------------------

    def _many_sql(self, ranged: bool) -> str:
        """The statement of a long read (see :meth:`_build_many`): one row per distinct shape
        (see :data:`_SHAPE`), ``(-1, NULL, NULL, NULL, NULL, key, shape, collation, NULL...)``
        (see :data:`_COLLATION`), and one row per step, as in :data:`_ManyRow`, in no order
        (sorted in Python, shapes first: DuckDB's sort of the union costs more). ``ranged``:
        with two more parameters, a range of row ids to scan (see :meth:`_fetch_within`).

        The rows are read twice, not materialized once: materializing the rows costs more
        than scanning them again (about 2 ms of 25 for 10,000 one-int steps)."""
        names = [f"f{i}" for i in range(len(self._fields))]
        fields = "".join(
            f", {_read(f'state.{quote(n)}', c)} AS {f}"
            for f, (n, c) in zip(names, self._fields.items(), strict=True)
        )
        return (
            "WITH r AS NOT MATERIALIZED (SELECT step, epoch_us(created_at) AS created_us, "
            "duration, "
            # The usual step has one write and none pending: its duration is read as a
            # number, its node and goto as part of the shape; a list of STRUCTs takes much
            # longer to convert to Python.
            f"CASE WHEN {_USUAL} THEN writes[1].duration END AS node_duration, "
            f"CASE WHEN NOT ({_USUAL}) THEN struct_pack(writes, pending) END AS others, "
            f"{_SHAPE} AS shape{fields} "
            f"FROM {self._cp_table} WHERE thread_id = ? AND step BETWEEN ? AND ?"
            f"{' AND rowid BETWEEN ? AND ?' if ranged else ''}) "
            "SELECT step, created_us, duration, node_duration, others, hash(shape), NULL, NULL"
            f"{''.join(', ' + f for f in names)} FROM r "
            f"UNION ALL SELECT DISTINCT -1, NULL, NULL, NULL, NULL, hash(shape), shape, "
            f"{_COLLATION}{', NULL' * len(names)} FROM r"
        )

    def _rows(
        self, thread_id: str, start: int, first: int, last: int, rowids: _Rowids = None
    ) -> tuple[list[_Row], dict[int, _Shape], int]:
        """The rows of steps ``start..last``, their shapes by key, and how many updates the
        steps from ``first`` on say their writes returned; the rows before ``first`` are
        needed for their growable fields only. A long read fetches its rows its own way (see
        :meth:`_build_many`).

        ``rowids``: the range of row ids the thread's rows were found in (see
        :meth:`_fetch_within`); the steps of a thread are consecutive, so a result with fewer
        rows than steps is short.
        """
        # Rows before ``first`` are read for their growable fields only (a load reads from
        # the last base row, often a hundred steps back).
        parts = ", ".join(
            f"{quote(n)} := {_read(f'state.{quote(n)}', self._fields[n])}" for n in self._growable
        )
        sql = (
            "SELECT step, base, "
            f"CASE WHEN step < ? THEN struct_pack({parts or 'x := NULL'}) END, "
            "CASE WHEN step >= ? THEN struct_pack(created_us := epoch_us(created_at), duration, "
            f"state := {_read('state', self._state_col)}, writes, pending, "
            f"{', '.join(_SHAPE_COLUMNS)}) END "
            f"FROM {self._cp_table} WHERE thread_id = ? AND step BETWEEN ? AND ?"
        )
        fetched = self._fetch_within(
            sql,
            f"{sql} AND rowid BETWEEN ? AND ?",
            [first, first, thread_id, start, last],
            rowids,
            lambda found: len(found) == last - start + 1,
            _first,
        )
        rows: list[_Row] = []
        shapes = {_BEFORE_BASE: _NOT_READ, _BEFORE: _NOT_READ_NOR_BASE}
        count = 0
        for step, base, before, row in fetched:
            if row is None:
                key = _BEFORE_BASE if base else _BEFORE
                rows.append((step, 0, 0.0, before, None, None, key))
                continue
            writes, pending = row["writes"], row["pending"]
            raw = {name: row[name] for name in _SHAPE_COLUMNS}
            if len(writes) == 1 and not pending:
                raw["node"], raw["goto"] = writes[0]["node"], writes[0]["goto"]
                node_duration, others = writes[0]["duration"], None
                count += writes[0]["updates"] or 0  # NULL only in a row edited by hand
            else:
                raw["node"] = raw["goto"] = None
                node_duration, others = None, {"writes": writes, "pending": pending}
                count += sum(w["updates"] or 0 for w in (*writes, *pending))
            created_us, duration, state = row["created_us"], row["duration"], row["state"]
            rows.append((step, created_us, duration, state, node_duration, others, step))
            shapes[step] = _shape(thread_id, raw)
        return rows, shapes, count

    def _fetch_within(
        self,
        sql: str,
        ranged_sql: str,
        params: list[Any],
        rowids: _Rowids,
        complete: Callable[[list[Any]], bool],
        order: Callable[[Any], Any],
    ) -> list[Any]:
        """The rows of ``sql`` with ``params``, sorted by ``order`` in Python (not by ORDER BY:
        DuckDB's sort of rows holding nested values costs more than the scan of a few rows,
        5-10% of a load at 1,000,000 rows).

        ``rowids``: the range of DuckDB row ids the thread's rows were found in just before
        (see :meth:`_locate`). Given, ``ranged_sql`` (``sql`` with two more parameters, the
        range) is read instead, and its scan skips the row groups outside the range: a thread's
        rows are written together, but its id does not say where (random ids such as UUIDs
        leave every row group's range of ids wide), and the nested columns of each row group a
        scan touches cost much more than the rows read. Row ids can change between two
        statements (a checkpoint compacts rows that were deleted), so a result that
        ``complete`` finds short is read again without the range: a range can only leave rows
        out, never add any.
        """
        if rowids is not None:
            rows = self._con.execute(ranged_sql, [*params, *rowids]).fetchall()
            rows.sort(key=order)
            if complete(rows):
                return rows
        rows = self._con.execute(sql, params).fetchall()
        rows.sort(key=order)
        return rows

    def _base_step(self, thread_id: str, step: int) -> int | None:
        if not self._growable:
            return step
        row = self._con.execute(
            f"SELECT max(step) FROM {self._cp_table} WHERE thread_id = ? AND step <= ? AND base",
            [thread_id, step],
        ).fetchone()
        return None if row is None else row[0]

    def _updates(
        self,
        thread_id: str,
        first: int,
        last: int,
        rowids: _Rowids = None,
        count: int | None = None,
    ) -> _Updates:
        """The updates of steps ``first..last`` (see :data:`_Updates`). The range of row ids
        the thread's updates were found in (``rowids``, see :meth:`_fetch_within`) is used
        with ``count``, how many updates the steps' writes say they returned."""
        if last - first + 1 >= _MANY and self._updates_shareable():
            shared = self._shared_updates(thread_id, first, last)
            if shared is not None:
                return shared
        out: _Updates = {}
        sql = (
            f"SELECT step, pending, position, seq, {_read('value', self._update_col)}, "
            "CASE WHEN len(unset) > 0 THEN unset END "
            f"FROM {self._up_table} WHERE thread_id = ? AND step BETWEEN ? AND ?"
        )
        rows = self._fetch_within(
            sql,
            f"{sql} AND rowid BETWEEN ? AND ?",
            [thread_id, first, last],
            None if count is None else rowids,
            lambda found: len(found) == count,
            _update_order,
        )
        load = self._update_loader(thread_id)
        key: int | tuple[int, bool, int] | None = None
        for step, pending, position, _, value, unset in rows:
            update = load(value, unset, step, pending, position)
            slot = _slot(step, pending, position)
            # Rows come in order: a key seen just before is a node that returned several.
            out[slot] = (*out[slot], update) if slot == key else (update,)
            key = slot
        return out

    def _updates_shareable(self) -> bool:
        """Whether steps may share a loaded update: it is immutable, and DuckDB tells stored
        values apart exactly as Python would (not so for floats: 0.0 and -0.0 are one value)."""
        return is_immutable_type(self._serde.update_type) and "DOUBLE" not in self._update_col.sql

    def _shared_updates(self, thread_id: str, first: int, last: int) -> _Updates | None:
        """:meth:`_updates` for a long read: each distinct update of a write is fetched and
        loaded once, with the steps that returned it (the steps of a thread often return equal
        updates); None when that cannot be done (a value does not load: reading row by row
        names the step it belongs to)."""
        rows = self._con.execute(
            f"SELECT value, unset, slot, seq, list(step), {_COLLATION} FROM (SELECT step, seq, "
            f"{_read('value', self._update_col)} AS value, "
            "CASE WHEN len(unset) > 0 THEN unset END AS unset, "
            "CASE WHEN pending OR position > 0 THEN position * 2 + pending::INTEGER END AS slot "
            f"FROM {self._up_table} WHERE thread_id = ? AND step BETWEEN ? AND ?) "
            "GROUP BY value, unset, slot, seq ORDER BY seq",
            [thread_id, first, last],
        ).fetchall()
        if rows and rows[0][5]:  # equal under the collation is not equal (see _COLLATION)
            return None
        load = self._update_loader(thread_id)
        out: _Updates = {}
        for value, unset, slot, seq, steps, _ in rows:
            try:
                one = (load(value, unset, 0, False, 0),)
            except SerializationError:
                return None
            keys: list[int] | list[tuple[int, bool, int]] = (
                steps if slot is None else [(s, bool(slot & 1), slot >> 1) for s in steps]
            )
            if seq == 0:
                out.update(dict.fromkeys(keys, one))
            else:
                # Groups come in order of seq: a node that returned several updates has its
                # earlier ones in place already.
                for key in keys:
                    out[key] = out.get(key, ()) + one
        return out

    def _update_loader(
        self, thread_id: str
    ) -> Callable[[Any, list[str] | None, int, bool, int], object]:
        """A function loading an update from its stored value and unset fields."""
        decode = self._update_col.decode
        has_fields = self._update_col.fields is not None
        update_type = self._serde.update_type
        # Looked up once per read: the happy path calls the converter's hook directly.
        hook = self._serde.converter.get_structure_hook(update_type)
        serde = self._serde

        def load(
            value: Any, unset: list[str] | None, step: int, pending: bool, position: int
        ) -> object:
            plain = decode(value)
            if unset is not None and has_fields and isinstance(plain, dict):
                for name in unset:
                    plain.pop(name, None)
            try:
                return hook(plain, update_type)
            except Exception:  # noqa: BLE001  # loaded again below, to name the failing field
                pass
            kind = "pending" if pending else "writes"
            path = f"checkpoint[{thread_id!r}, step {step}].{kind}[{position}].update"
            return serde.load_update(plain, path=path)

        return load

    def _locate(self, thread_id: str, step: int | None) -> _Found | None:
        """For a load of ``step`` (the latest when None): where the thread's rows are (see
        :class:`_Found`), found in one query, through the indexes on ``thread_id``; None when
        the thread is not stored. Reads only the typed tables: a read moves the log first.

        The ranges of row ids are looked up in a table of more than two of DuckDB's row groups
        only: in a smaller one, a scan touches at most two anyway, and the lookup (about 1 ms)
        would cost more than it saves."""
        latest = self._latest.get(thread_id)
        if latest is not None and not self._growable:
            return _Found(latest, latest if step is None else step)
        if not _is_text(thread_id):  # an id that is not text was never stored
            return None
        ranged = self._shared.rows >= _RANGES_FROM
        ranges = (
            f", min(rowid), max(rowid), (SELECT [min(rowid), max(rowid)] FROM {self._up_table} "
            "WHERE thread_id = $1)"
            if ranged
            else ""
        )
        row = self._con.execute(
            f"SELECT max(step), max(step) FILTER (WHERE base AND step <= $2), min(step)"
            f"{ranges} FROM {self._cp_table} WHERE thread_id = $1",
            [thread_id, _MAX_STEP if step is None else max(-1, min(step, _MAX_STEP))],
        ).fetchone()
        if row is None or row[0] is None:
            return None
        latest, base, oldest = row[:3]
        self._latest[thread_id] = latest
        target = latest if step is None else step
        start = target if base is None or not self._growable else min(base, target)
        if not ranged:
            return _Found(latest, start, oldest)
        low, high, (up_low, up_high) = row[3:]
        # No updates at all: an empty range (the steps' writes should say none either).
        updates = (0, -1) if up_low is None else (up_low, up_high)
        return _Found(latest, start, oldest, (low, high), updates)

    def _load_range(
        self,
        thread_id: str,
        first: int,
        last: int,
        rowids: _Rowids = None,
        update_rowids: _Rowids = None,
    ) -> list[Checkpoint[S]]:
        """Checkpoints ``first..last`` of a thread, putting growable fields back together;
        ``rowids`` and ``update_rowids`` as for :meth:`_build`."""
        base = self._base_step(thread_id, first)
        start = first if base is None else min(base, first)
        return self._build(thread_id, start, first, last, rowids, update_rowids)

    def _build(
        self,
        thread_id: str,
        start: int,
        first: int,
        last: int,
        rowids: _Rowids = None,
        update_rowids: _Rowids = None,
    ) -> list[Checkpoint[S]]:
        """:meth:`_load_range`, reading steps from ``start`` (a base row, for growable fields);
        ``rowids`` and ``update_rowids`` as for :meth:`_rows` and :meth:`_updates`."""
        if last - start + 1 >= _MANY:
            # A long read makes several objects per step, which would set the garbage
            # collector off again and again, each time walking the process's long-lived
            # objects: 10,000 one-int steps took 86 -> 57 ms a read in a process holding
            # 300,000 other objects (the collections after it included), 64 -> 58 ms in a
            # nearly empty one.
            with collector_paused():
                built = self._build_many(thread_id, start, first, last, rowids)
                if built is None:
                    built = self._build_each(thread_id, start, first, last, rowids, update_rowids)
            return built
        return self._build_each(thread_id, start, first, last, rowids, update_rowids)

    def _build_each(
        self,
        thread_id: str,
        start: int,
        first: int,
        last: int,
        rowids: _Rowids,
        update_rowids: _Rowids,
    ) -> list[Checkpoint[S]]:
        """:meth:`_build` a row at a time (any read :meth:`_build_many` does not make)."""
        rows, shapes, count = self._rows(thread_id, start, first, last, rowids)
        updates = self._updates(thread_id, first, last, update_rowids, count)
        decode = self._state_col.decode
        grown, load = self._state_loader(thread_id)
        parts = [(g, self._fields[g.name].decode) for g in grown]
        out: list[Checkpoint[S]] = []
        add = out.append
        epoch, delta = _EPOCH, timedelta
        for step, created_us, duration, state, node_duration, others, key in rows:
            make, is_base, node, goto = shapes[key]
            if step < first:  # needed for its growable fields only
                for g, field_decode in parts:
                    part = state.get(g.name)
                    g.add([] if part is None else field_decode(part), is_base)
                continue
            value = load(step, decode(state), is_base)
            if others is None:  # the usual step: one node ran, none is pending
                ups = updates.get(step, ())
                writes: tuple[NodeWrite[object], ...] = (
                    make_write(node, ups, goto, node_duration),  # type: ignore[arg-type]  # set in the usual step
                )
                pending: tuple[NodeWrite[object], ...] = ()
            else:
                writes = _writes(others["writes"], updates, step, False)
                pending = _writes(others["pending"], updates, step, True)
            add(make(step, value, writes, pending, duration, epoch + delta(0, 0, created_us)))
        return out

    def _build_many(
        self, thread_id: str, start: int, first: int, last: int, rowids: _Rowids = None
    ) -> list[Checkpoint[S]] | None:
        """:meth:`_build` for a long read; None when two distinct shapes share a hash (then
        the rows are read one by one). ``rowids`` as for :meth:`_rows`.

        Converting nested values to Python costs more than anything else in a read, and
        most rows of a thread share one of a few shapes (see :data:`_SHAPE`), so each distinct
        shape is fetched once, keyed by its hash; the state's fields are fetched as columns of
        their own, not one STRUCT (which reaches Python as a dict). The checkpoints are then
        made a field at a time (see :func:`make_checkpoints`).
        """
        # One statement, so that the shapes and the rows come from one snapshot. Sorted, the
        # shapes (step -1) come first, then the steps in order.
        fetched: list[_ManyRow] = self._fetch_within(
            self._many_sql(False),
            self._many_sql(True),
            [thread_id, start, last],
            rowids,
            lambda found: _step_rows(found) == last - start + 1,
            _first,
        )
        count = 0
        shared: dict[int, SharedFields] = {}
        is_base: dict[int, bool] = {}
        node: dict[int, str | None] = {}
        goto: dict[int, tuple[str, ...] | None] = {}
        for row in fetched:
            if row[0] >= 0:
                break
            if row[7]:  # equal under the collation is not equal (see _COLLATION)
                return None
            key, raw = row[5], row[6]
            shared[key], is_base[key] = _shared(raw), raw["base"]
            node[key] = raw["node"]
            goto[key] = None if raw["goto"] is None else tuple(raw["goto"])
            count += 1
        if len(shared) != count:
            return None
        if count == len(fetched):
            return []
        steps, created_us, durations, node_durations, others, keys, _, _, *fields = zip(
            *fetched[count:], strict=True
        )
        updates = self._updates(thread_id, first, last)
        states = self._many_states(thread_id, first, steps, [is_base[k] for k in keys], fields)
        # Rows before ``first`` are read for their growable fields only.
        skip = bisect_left(steps, first)
        if skip:
            steps, created_us, durations = steps[skip:], created_us[skip:], durations[skip:]
            node_durations, others, keys = node_durations[skip:], others[skip:], keys[skip:]
        # The writes of the usual steps are made together, the others (few) one by one.
        odd = list(compress(range(len(others)), map(operator.is_not, others, repeat(None))))
        if odd:
            usual = list(map(operator.is_, others, repeat(None)))
            u_steps = list(compress(steps, usual))
            u_keys = list(compress(keys, usual))
            u_durations = list(compress(node_durations, usual))
        else:
            u_steps, u_keys, u_durations = list(steps), list(keys), list(node_durations)
        kinds = {(node[k], goto[k]) for k in set(u_keys)}
        if len(kinds) == 1:
            one_node, one_goto = kinds.pop()
            nodes: Iterable[Any] = repeat(one_node)
            gotos: Iterable[tuple[str, ...] | None] = repeat(one_goto)
        else:
            nodes, gotos = map(node.__getitem__, u_keys), map(goto.__getitem__, u_keys)
        ups = map(updates.get, u_steps, repeat(()))
        # zip() of one list: its items as 1-tuples, the writes of the usual steps.
        writes: list[tuple[NodeWrite[object], ...]] = list(
            zip(make_writes(nodes, ups, gotos, u_durations))
        )
        pending: Iterable[tuple[NodeWrite[object], ...]] = repeat(())
        if odd:
            # Row ``i``, the n-th odd one, comes after ``i - n`` usual ones.
            merged: list[tuple[NodeWrite[object], ...]] = []
            placed = 0
            some_pending: list[tuple[NodeWrite[object], ...]] = [()] * len(steps)
            for n, i in enumerate(odd):
                merged += writes[placed : i - n]
                placed = i - n
                merged.append(_writes(others[i]["writes"], updates, steps[i], False))
                some_pending[i] = _writes(others[i]["pending"], updates, steps[i], True)
            merged += writes[placed:]
            writes, pending = merged, some_pending
        created = map(_EPOCH.__add__, map(timedelta, repeat(0), repeat(0), created_us))
        return make_checkpoints(
            thread_id,
            list(map(shared.__getitem__, keys)),
            steps,
            states,
            writes,
            pending,
            durations,
            created,
        )

    def _many_states(
        self,
        thread_id: str,
        first: int,
        steps: Sequence[int],
        is_base: Sequence[bool],
        fields: Sequence[Sequence[Any]],
    ) -> list[S]:
        """The states of the rows of a long read from step ``first`` on, from the columns of
        their fields; the rows before ``first`` are read for their growable fields only."""
        schema = self._schema
        if self._many_direct:
            skip = bisect_left(steps, first)
            columns = [column[skip:] if skip else column for column in fields]
            # A NULL in a field that cannot be None is a field added after the row was
            # written, which loads as its default (see struct_column): made row by row below.
            if not any(None in columns[i] for i in self._not_nullable):
                try:
                    return list(map(schema, *columns))
                except Exception:  # noqa: BLE001  # loaded again below, to name the failing field
                    pass
        names = tuple(self._fields)
        decode = self._state_col.decode
        grown, load = self._state_loader(thread_id)
        parts = [(g, names.index(g.name), self._fields[g.name].decode) for g in grown]
        out: list[S] = []
        add = out.append
        for step, base, values in zip(steps, is_base, zip(*fields, strict=True), strict=True):
            if step < first:  # needed for its growable fields only
                for g, i, field_decode in parts:
                    part = values[i]
                    g.add([] if part is None else field_decode(part), base)
                continue
            add(load(step, decode(dict(zip(names, values, strict=True))), base))
        return out

    def _state_loader(
        self, thread_id: str
    ) -> tuple[list[_Grown], Callable[[int, dict[str, Any], bool], S]]:
        """For one read of a thread, in step order: its growable fields' accumulators, and a
        function making the state of a step from its decoded fields (and whether its row is a
        base row), which also adds the step's growable parts to the accumulators.

        The hooks are looked up once per read: the happy path calls the converter's hooks (or
        the state class) directly, and loads again the slow way only to say what failed (see
        :meth:`_load_slowly`)."""
        schema = self._schema
        hook = self._serde.converter.get_structure_hook(schema)
        assemble = self._serde.state_hook(self._growable) if self._growable else None
        direct, direct_assembled = self._direct
        grown = [self._grown(name, keep=assemble is not None) for name in self._growable]

        def load(step: int, plain: dict[str, Any], is_base: bool) -> S:
            for g in grown:
                g.add(plain.get(g.name) or [], is_base)
            try:
                if not grown:
                    return schema(**plain) if direct else hook(plain, schema)
                if assemble is not None and all(g.value is not None for g in grown):
                    for g in grown:
                        plain[g.name] = g.value
                    return schema(**plain) if direct_assembled else assemble(plain, schema)
                for g in grown:
                    plain[g.name] = list(g.raw)
                return hook(plain, schema)  # type: ignore[no-any-return]  # the hook of S makes an S
            except Exception:  # noqa: BLE001  # loaded again, to name the failing field
                return self._load_slowly(thread_id, step, plain, grown)

        return grown, load

    @functools.cached_property
    def _many_direct(self) -> bool:
        """Whether a long read makes states by calling the state class with their fields'
        columns as positional arguments (see :meth:`Serde.callable_directly`)."""
        fields = attrs.fields(self._schema)  # type: ignore[arg-type]  # schema_info() checked it is an attrs class
        return (
            bool(fields)
            and not self._growable
            and self._direct[0]
            and not any(a.kw_only for a in fields)
        )

    @functools.cached_property
    def _not_nullable(self) -> tuple[int, ...]:
        """The positions of the state fields that cannot be None."""
        return tuple(i for i, c in enumerate(self._fields.values()) if not c.nullable)

    def _grown(self, name: str, *, keep: bool) -> _Grown:
        """How to put growable field ``name`` back together in one read (``keep``: whether
        its loaded items may be kept, see :class:`_Grown`)."""
        tp = self._field_types[name]
        conv = self._serde.converter
        # Loaded parts are shared by the states of consecutive steps: only immutable items.
        fast = keep and is_immutable_type(typing.get_args(tp)[0])
        exact = "DOUBLE" not in self._fields[name].sql
        return _Grown(
            name, conv.get_structure_hook(tp), tp, typing.get_origin(tp) is list, fast, exact
        )

    def _load_slowly(
        self, thread_id: str, step: int, plain: dict[str, Any], grown: list[_Grown]
    ) -> S:
        """Load a state the slow way, which names the field that cannot be loaded."""
        for g in grown:
            plain[g.name] = list(g.raw)
        where = f"checkpoint[{thread_id!r}, step {step}].state"
        try:
            return self._serde.load_state(plain, path=where)
        except SerializationError as exc:
            raise IncompatibleSchemaError(
                f"the stored checkpoint of thread {thread_id!r} at step {step} does not fit "
                f"{self._schema.__qualname__}: {exc}",
                field=exc.path,
            ) from exc

    def _read(self) -> None:
        """Before a read: commit buffered checkpoints and move logged ones into the typed
        tables, so reads see every save."""
        self._check_open()
        self._flush_locked()
        self._move_log_now()

    def load(self, thread_id: str) -> Checkpoint[S]:
        with self._lock, _mapped(f"cannot load thread {thread_id!r}"):
            self._read()
            found = self._locate(thread_id, None)
            if found is None:
                raise self._not_found(thread_id)
            return self._build(thread_id, found.start, found.latest, found.latest, *found.rowids)[0]

    def load_at(self, thread_id: str, step: int) -> Checkpoint[S]:
        with self._lock, _mapped(f"cannot load thread {thread_id!r} at step {step!r}"):
            self._read()
            found = self._locate(thread_id, step)
            if found is None:
                raise self._not_found(thread_id)
            loaded = (
                self._build(thread_id, found.start, step, step, *found.rowids)
                if 0 <= step <= found.latest
                else []
            )
            if not loaded:
                raise StepNotFoundError(thread_id, step, "never made or pruned")
            return loaded[0]

    def history(
        self, thread_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Checkpoint[S]]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit!r}")
        with self._lock, _mapped(f"cannot list thread {thread_id!r}"):
            self._read()
            found = self._locate(thread_id, None)
            if found is None:
                raise self._not_found(thread_id)
            last = found.latest if before is None else min(found.latest, before - 1)
            if limit == 0 or last < 0:
                return []
            first = found.oldest
            if first is None:
                row = self._con.execute(
                    f"SELECT min(step) FROM {self._cp_table} WHERE thread_id = ?", [thread_id]
                ).fetchone()
                first = 0 if row is None or row[0] is None else row[0]
            if limit is not None:
                first = max(first, last - limit + 1)
            if last < first:
                return []
            return list(reversed(self._load_range(thread_id, first, last, *found.rowids)))

    def threads(self) -> list[ThreadInfo]:
        with self._lock, _mapped("cannot list threads"):
            self._read()
            rows = self._con.execute(
                f"SELECT t.thread_id, t.schema_name, t.schema_version, t.created_at::TIMESTAMP, "
                "t.parent_thread_id, t.parent_step, c.step, c.status, "
                "len(c.next) = 0 AND c.status = 'ok' "
                f"FROM {THREADS} t JOIN (SELECT thread_id, max(step) AS step FROM {self._cp_table} "
                f"GROUP BY thread_id) m USING (thread_id) JOIN {self._cp_table} c "
                "ON c.thread_id = m.thread_id AND c.step = m.step "
                "WHERE t.table_name = ? ORDER BY t.created_at, t.thread_id",
                [self._table],
            ).fetchall()
        return [
            ThreadInfo(
                thread_id=tid,
                schema_name=name,
                schema_version=version,
                created_at=created.replace(tzinfo=UTC),
                latest_step=step,
                status=status,
                done=done,
                parent=None if p_thread is None else ParentRef(thread_id=p_thread, step=p_step),
            )
            for tid, name, version, created, p_thread, p_step, step, status, done in rows
        ]

    def delete(self, thread_id: str) -> None:
        with self._lock, _mapped(f"cannot delete thread {thread_id!r}"):
            self._read()
            if self._latest_step(thread_id) is None:
                raise self._not_found(thread_id)
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DELETE FROM {self._up_table} WHERE thread_id = ?", [thread_id])
                con.execute(f"DELETE FROM {self._cp_table} WHERE thread_id = ?", [thread_id])
                con.execute(f"DELETE FROM {THREADS} WHERE thread_id = ?", [thread_id])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                self._latest.pop(thread_id, None)
                self._tails.pop(thread_id, None)

    def prune(self, thread_id: str, *, keep: int) -> int:
        if keep < 1:
            raise ValueError(
                f"keep must be at least 1 (the latest checkpoint is always kept), got {keep!r}"
            )
        with self._lock, _mapped(f"cannot prune thread {thread_id!r}"):
            self._read()
            latest = self._latest_step(thread_id)
            if latest is None:
                raise self._not_found(thread_id)
            cutoff = latest - keep + 1
            row = self._con.execute(
                f"SELECT count(*) FROM {self._cp_table} WHERE thread_id = ? AND step < ?",
                [thread_id, cutoff],
            ).fetchone()
            gone = 0 if row is None else int(row[0])
            if not gone:
                return 0
            # The oldest kept step must hold its growable fields in full once older rows are gone.
            first = self._load_range(thread_id, cutoff, cutoff)[0]
            full = {
                name: encode_checked(
                    self._fields[name],
                    self._serde.converter.unstructure(
                        getattr(first.state, name), unstructure_as=self._field_types[name]
                    ),
                    f"state.{name}",
                )
                for name in self._growable
            }
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    f"DELETE FROM {self._up_table} WHERE thread_id = ? AND step < ?",
                    [thread_id, cutoff],
                )
                con.execute(
                    f"DELETE FROM {self._cp_table} WHERE thread_id = ? AND step < ?",
                    [thread_id, cutoff],
                )
                for name, value in full.items():
                    con.execute(
                        f"UPDATE {self._cp_table} SET state = struct_update(state, "
                        f"{quote(name)} := {_cast(self._fields[name])}), base = true "
                        "WHERE thread_id = ? AND step = ?",
                        [_one(value), thread_id, cutoff],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                self._tails.pop(thread_id, None)
            return gone


_THREAD_ROW: Final = (
    "STRUCT(thread_id VARCHAR, schema_name VARCHAR, schema_version INTEGER, table_name VARCHAR, "
    "created_at TIMESTAMPTZ, parent_thread_id VARCHAR, parent_step BIGINT)"
)


class _Prepared:
    """Statements prepared once per DuckDB connection and executed by name.

    DuckDB parses and binds a statement anew at every ``execute``; for one that casts JSON to
    the nested row types of a checkpoint, that costs several milliseconds, more than inserting
    hundreds of rows. A prepared statement is bound once (DuckDB binds it again by itself if a
    table it uses changes).
    """

    def __init__(self) -> None:
        self._done: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def execute(
        self, con: duckdb.DuckDBPyConnection, name: str, sql: str, text: str | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Execute ``sql`` prepared as ``name`` on ``con``, with ``text`` as its one parameter.

        The parameter goes into the ``EXECUTE`` statement as a string literal (DuckDB's Python
        client cannot bind parameters of an ``EXECUTE``): callers pass JSON text, which holds
        no NUL character and whose quotes are doubled here, so it cannot end the literal.
        """
        key = (id(con), name)
        with self._lock:
            if key not in self._done:
                con.execute(f"PREPARE {name} AS {sql}")
                self._done.add(key)
        if text is None:
            return con.execute(f"EXECUTE {name}")
        return con.execute(f"EXECUTE {name}('{text.replace(chr(39), chr(39) * 2)}')")


def _insert_sql(table: str, row_type: str) -> str:
    """SQL inserting rows given as one parameter: their JSON texts, one per line. DuckDB casts
    each line to the typed columns, several times faster than binding nested Python values
    (and than casting one JSON array of all the rows)."""
    return (
        f"INSERT INTO {table} SELECT r.* FROM "
        f"(SELECT unnest(string_split($1, chr(10)))::JSON::{row_type} AS r)"
    )


def _lines(rows: list[dict[str, Any]]) -> str:
    """Rows as JSON texts, one per line (JSON text escapes every newline in its strings)."""
    return "\n".join(map(_dumps, rows))


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=True, check_circular=False)
"""Made once: ``json.dumps`` with options makes an encoder for every call. It does not look
for circular references (a few microseconds a row): it encodes rows the column encoders
built anew, with nothing nested but what those made."""


def _fast_dumps() -> Callable[[object], str]:
    """``_ENCODER.encode``, or a faster function that gives the same text.

    ``JSONEncoder.encode`` makes a new encoder object of CPython's C accelerator at every
    call, which costs about as much as encoding a small row. Here it is made once, with
    ``_ENCODER``'s options. Its constructor is not a public API: it is used only if it can be
    made and encodes a probe value exactly as ``_ENCODER`` does.
    """
    make: Callable[..., Callable[[object, int], Sequence[str]]] | None = getattr(
        json.encoder, "c_make_encoder", None
    )
    if make is None:
        return _ENCODER.encode
    try:
        encode = make(
            None,  # no markers: no search for circular references, as in _ENCODER
            _ENCODER.default,
            json.encoder.encode_basestring,
            None,  # no indent
            _ENCODER.key_separator,
            _ENCODER.item_separator,
            False,  # sort_keys
            False,  # skipkeys
            True,  # allow_nan
        )

        def dumps(value: object) -> str:
            return "".join(encode(value, 0))

        probe = {
            "a": [1, -2.5, 1e300, float("nan"), float("inf"), float("-inf"), None, True, False],
            "b": {"c": 'é\n"\\\u2028\x00 ☃', "d": [], "e": {}},
            "f": [{"g": -0.0, "h": 2**70}],
        }
        if dumps(probe) != _ENCODER.encode(probe):
            return _ENCODER.encode
    except (TypeError, ValueError):
        return _ENCODER.encode
    return dumps


_dumps: Final = _fast_dumps()
"""A value as JSON text, as ``_ENCODER`` encodes it."""


def _cast(column: Column) -> str:
    """SQL for a parameter made by :func:`_one` as the column's type."""
    # Wrapped in a list: a JSON string cast to VARCHAR on its own would keep its quotes.
    return f"(?::JSON::{column.wire_sql}[])[1]::{column.sql}"


def _is_text(value: str) -> bool:
    """Whether a string can be stored as text (UTF-8): no lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read(name: str, column: Column) -> str:
    """SQL reading a column as its read type; no cast where there is nothing to convert, as
    DuckDB parses the text of a nested type anew in every statement."""
    return name if column.read_sql == column.sql else f"{name}::{column.read_sql}"


def _one(value: object) -> str:
    return _dumps([value])


def _fast_encoder(column: Column) -> Callable[[Any], Any]:
    """The column's encoder, for values the converter dumps as they are (see
    :meth:`Serde.dumps_as_is`), to skip the converter: a tuple or list goes through it as
    the converter's list of its items would. Any other value fails, to be encoded again the
    general way (an iterator could not be read again)."""
    encode = column.encode
    if column.item is None:
        return encode

    def encode_sequence(value: Any) -> Any:
        if value is None or type(value) is tuple or type(value) is list:
            return encode(value)
        raise TypeError(f"{type(value).__qualname__} is not a tuple or list")

    return encode_sequence


def _write_row(w: NodeWrite[object]) -> dict[str, Any]:
    return {
        "node": w.node,
        "goto": None if w.goto is None else list(w.goto),
        "duration": float(w.duration),
        "updates": len(w.updates),
    }


def _step_rows(fetched: list[_ManyRow]) -> int:
    """How many rows of a long read's sorted result are steps (they follow the few shape rows,
    whose step is -1)."""
    shapes = 0
    for row in fetched:
        if row[0] >= 0:
            break
        shapes += 1
    return len(fetched) - shapes


def _index_name(table: str) -> str:
    """The name of typedflow's index on ``thread_id`` of a table (see ``_create_indexes``)."""
    return f"{table}_by_thread"


def _failure_row(f: NodeFailure) -> dict[str, Any]:
    return {
        "node": f.node,
        "error_type": f.error_type,
        "message": f.message,
        "duration": None if f.duration is None else float(f.duration),
    }


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_USUAL: Final = "len(writes) = 1 AND len(pending) = 0"
"""SQL: the row is of a step where one node ran and none is pending."""

_SHAPE_COLUMNS: Final = (
    "status",
    "next",
    "reason",
    "base",
    "failures",
    "metadata",
    "parent_thread_id",
    "parent_step",
)

_SHAPE: Final = (
    f"struct_pack({', '.join(_SHAPE_COLUMNS)}, "
    f"node := CASE WHEN {_USUAL} THEN writes[1].node END, "
    f"goto := CASE WHEN {_USUAL} THEN writes[1].goto END)"
)
"""SQL: what most rows of a thread share, their shape: every column but the step, its times
and the state, and the node and goto of the only write of a usual step."""

_NOT_READ: Final[_Shape] = (make_checkpoint, True, None, None)
"""The shape of a row read for its growable fields only (see ``_rows``): whether it is a base
row is all that is used."""

_NOT_READ_NOR_BASE: Final[_Shape] = (make_checkpoint, False, None, None)

_BEFORE_BASE: Final = -1
_BEFORE: Final = -2
"""The shape keys of rows read for their growable fields only, base rows and others."""

_COLLATION: Final = "current_setting('default_collation')"
"""SQL: the collation text is compared under, unless a column says otherwise; empty by
default. DuckDB groups text under it, and hashes text under it too ('Tick' and 'tick' are one
value, and hash alike, under ``NOCASE``): a long read that fetches each distinct shape or
update once reads row by row under another collation."""

_MAX_STEP: Final = 2**63 - 1
"""The largest step a BIGINT holds."""

_MANY: Final = 256
"""From how many rows on a read fetches each distinct shape and update once (see ``_rows``
and ``_updates``)."""

_Rowids: TypeAlias = tuple[int, int] | None
"""The lowest and highest DuckDB row id of a thread's rows in a table, as found by one query;
None when not known."""


class _Found(NamedTuple):
    """Where a thread's rows are, for a read (see ``DuckDBCheckpointer._locate``)."""

    latest: int
    """The thread's latest step."""
    start: int
    """The step a load of the asked step reads from: its last base row up to that step."""
    oldest: int | None = None
    """The thread's oldest step; None when not looked up."""
    checkpoint_rowids: _Rowids = None
    """The range of row ids of the thread's checkpoints; None when not looked up."""
    update_rowids: _Rowids = None
    """The range of row ids of the thread's updates (empty if it has none); None when not
    looked up."""

    @property
    def rowids(self) -> tuple[_Rowids, _Rowids]:
        """Both ranges, as :meth:`DuckDBCheckpointer._build` takes them."""
        return self.checkpoint_rowids, self.update_rowids


_Row: TypeAlias = tuple[int, int, float, Any, float | None, Any, int]
"""A checkpoint row as read: step, created_at (microseconds since 1970 UTC), duration, the
state as stored; the duration of the only write of a usual step (one node ran, none is
pending) or else ``{"writes": [...], "pending": [...]}``; the key of its shape."""

_ManyRow: TypeAlias = tuple[Any, ...]
"""A row of a long read (see :meth:`DuckDBCheckpointer._many_sql`) after its shape rows: step,
created_at (microseconds since 1970 UTC), duration, the duration of the only write of a usual
step (one node ran, none is pending) or else None, ``{"writes": [...], "pending": [...]}`` or
else None, the key of its shape, None twice (where the shapes come), then the state's fields
as stored."""

_Updates: TypeAlias = dict[int | tuple[int, bool, int], tuple[object, ...]]
"""The updates of the writes of some steps: the key of the first write of a step is the step
(a dict lookup that makes no tuple, for the usual step), of the others (step, pending,
position)."""

_Shape: TypeAlias = tuple[Callable[..., Checkpoint[Any]], bool, str | None, tuple[str, ...] | None]
"""A row's shape, loaded: :func:`make_checkpoint` given the fields the rows of one shape
share (the rest are ``step, state, writes, pending, duration, created_at``); whether growable
fields are stored in full; the node and goto of the only write of a usual step."""


def _shared(raw: Mapping[str, Any]) -> SharedFields:
    """The fields of the checkpoints of one shape (see :data:`_SHAPE`) that
    :func:`make_checkpoint` takes after the thread id."""
    p_thread = raw["parent_thread_id"]
    return (
        tuple(raw["next"]),
        raw["status"],
        tuple(NodeFailure(**f) for f in raw["failures"]),
        raw["reason"],
        None if p_thread is None else ParentRef(thread_id=p_thread, step=raw["parent_step"]),
        freeze_metadata(json.loads(raw["metadata"])),
    )


def _shape(thread_id: str, raw: Mapping[str, Any]) -> _Shape:
    make = partial(make_checkpoint, thread_id, *_shared(raw))
    goto = raw["goto"]
    return make, raw["base"], raw["node"], None if goto is None else tuple(goto)


def _slot(step: int, pending: bool, position: int) -> int | tuple[int, bool, int]:
    """The key of the updates of one write in :data:`_Updates`."""
    return step if position == 0 and not pending else (step, pending, position)


def _writes(
    rows: Sequence[Mapping[str, Any]], updates: _Updates, step: int, pending: bool
) -> tuple[NodeWrite[object], ...]:
    return tuple(
        make_write(
            r["node"],
            updates.get(_slot(step, pending, i), ()),
            None if r["goto"] is None else tuple(r["goto"]),
            r["duration"],
        )
        for i, r in enumerate(rows)
    )


@attrs.define
class _Grown:
    """A growable state field put back together over the rows of one read.

    Each row stores the items added in its step (or all of them, in a base row);
    the loaded items of earlier rows are kept, so that each item is loaded once
    rather than once per later step. The states of consecutive steps then share
    items, so this is done only for immutable items (``fast``).
    """

    name: str
    hook: Callable[[Any, Any], Any]
    """The converter's structure hook for the field's type."""
    tp: Any
    """The field's type."""
    is_list: bool
    """True for a list field (each state needs a list of its own), False for a tuple."""
    fast: bool
    """Whether loaded items may be kept."""
    exact: bool = False
    """Whether stored items that compare equal in Python are the same value (not so for
    floats: 0.0 and -0.0), so that a base row repeating the items so far needs only its new
    ones loaded."""
    started: bool = False
    raw: list[Any] = attrs.Factory(list)
    """The field's stored items so far."""
    value: Any = None
    """The field's value so far, loaded; None when not kept (not ``fast``, or an item could not
    be loaded: then the whole value is loaded again, which names the failing item)."""

    def add(self, part: list[Any], is_base: bool) -> None:
        """Add the items stored in one row (all of them, in a base row)."""
        if is_base and self.exact and self.value is not None:
            # A base row stored every ``snapshot_every`` steps repeats the items so far.
            known = len(self.raw)
            if len(part) >= known and part[:known] == self.raw:
                is_base, part = False, part[known:]
        if is_base or not self.started:
            self.started = True
            self.raw = list(part)
            self.value = self._load(part) if self.fast else None
            return
        self.raw.extend(part)
        if self.value is None:
            return
        if part:
            loaded = self._load(part)
            self.value = None if loaded is None else self.value + loaded
        elif self.is_list:
            self.value = list(self.value)

    def _load(self, part: list[Any]) -> Any:
        try:
            return self.hook(part, self.tp)
        except Exception:  # noqa: BLE001  # the whole value is loaded again, naming the item
            return None
