"""DuckDB backend: schema evolution. A schema that gained fields with defaults opens the tables
written by its older version; any other change is refused, naming the field, and changes nothing.

Each version of the schema is its own class here, with ``__qualname__`` set to ``"Doc"``: to
the backend they are one schema, as if the class had been edited between two runs of a program.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
import duckdb
import pytest

from typedflow import (
    END,
    UNSET,
    Checkpoint,
    CheckpointError,
    IncompatibleSchemaError,
    NodeWrite,
    Runner,
    StateSchema,
    Unset,
    field,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.reducers import add, extend

# ----- version 1 -----------------------------------------------------------------------------


@attrs.frozen
class DocUpdateV1:
    """The update type of version 1."""

    n: int | Unset = UNSET
    """Added to ``n``."""
    lines: tuple[str, ...] | Unset = UNSET
    """Appended to ``lines``."""


@attrs.frozen
class DocV1(StateSchema[DocUpdateV1]):
    """Version 1: a counter and a growing list of lines."""

    __qualname__ = "Doc"
    n: int = field(default=0, reducer=add)
    """A counter."""
    lines: tuple[str, ...] = field(default=(), reducer=extend)
    """One line per step (stored as deltas)."""


@DocV1.node
def write_v1(state: DocV1) -> DocUpdateV1:
    return DocUpdateV1(n=1, lines=(f"line {state.n}",))


# ----- version 2: adds fields with defaults (compatible) -------------------------------------


@attrs.frozen
class DocUpdateV2:
    """The update type of version 2: two more fields."""

    n: int | Unset = UNSET
    """Added to ``n``."""
    lines: tuple[str, ...] | Unset = UNSET
    """Appended to ``lines``."""
    title: str | Unset = UNSET
    """Replaces ``title``."""
    note: str | Unset | None = UNSET
    """Replaces ``note``; None is a value, unlike UNSET."""


@attrs.frozen
class DocV2(StateSchema[DocUpdateV2]):
    """Version 2: three fields more, each with a default."""

    __qualname__ = "Doc"
    schema_version: ClassVar[int] = 2
    n: int = field(default=0, reducer=add)
    """A counter."""
    lines: tuple[str, ...] = field(default=(), reducer=extend)
    """One line per step."""
    title: str = "untitled"
    """A new field."""
    note: str | None = "no note yet"
    """A new optional field whose default is not None."""
    tags: tuple[str, ...] = ("new",)
    """A new growing field whose default is not empty."""


@DocV2.node
def write_v2(state: DocV2) -> DocUpdateV2:
    return DocUpdateV2(n=1, lines=(f"line {state.n}",), title=f"title {state.n}", note=None)


# ----- incompatible versions -----------------------------------------------------------------


@attrs.frozen
class DocRetyped(StateSchema[DocUpdateV1]):
    """``n`` changed type."""

    __qualname__ = "Doc"
    n: float = 0.0
    """Was an int."""
    lines: tuple[str, ...] = ()
    """Unchanged."""

    def apply(self, update: DocUpdateV1) -> DocRetyped:
        return self


@attrs.frozen
class DocWithoutLines(StateSchema[DocUpdateV1]):
    """``lines`` was removed."""

    __qualname__ = "Doc"
    n: int = 0
    """Unchanged."""

    def apply(self, update: DocUpdateV1) -> DocWithoutLines:
        return self


@attrs.frozen(kw_only=True)
class DocWithOwner(StateSchema[DocUpdateV1]):
    """``owner`` was added without a default."""

    __qualname__ = "Doc"
    n: int = 0
    """Unchanged."""
    lines: tuple[str, ...] = ()
    """Unchanged."""
    owner: str
    """New, and required."""

    def apply(self, update: DocUpdateV1) -> DocWithOwner:
        return self


@attrs.frozen
class DocUpdateRetyped:
    """The update field ``n`` changed type."""

    n: str | Unset = UNSET
    """Was an int."""
    lines: tuple[str, ...] | Unset = UNSET
    """Unchanged."""


@attrs.frozen
class DocUpdateRetypedState(StateSchema[DocUpdateRetyped]):
    """Its state gains a field with a default (fine), its update changes a type (not fine)."""

    __qualname__ = "Doc"
    n: int = 0
    """Unchanged."""
    lines: tuple[str, ...] = ()
    """Unchanged."""
    title: str = "untitled"
    """New, with a default: alone, this change would be accepted."""

    def apply(self, update: DocUpdateRetyped) -> DocUpdateRetypedState:
        return self


@attrs.frozen
class DocUpdateWithoutLines:
    """The update field ``lines`` was removed."""

    n: int | Unset = UNSET
    """Unchanged."""


@attrs.frozen
class DocUpdateShrunkState(StateSchema[DocUpdateWithoutLines]):
    """Same state as version 1; its update lost a field that stored updates hold."""

    __qualname__ = "Doc"
    n: int = 0
    """Unchanged."""
    lines: tuple[str, ...] = ()
    """Unchanged."""

    def apply(self, update: DocUpdateWithoutLines) -> DocUpdateShrunkState:
        return self


@attrs.frozen
class Memo(StateSchema[DocUpdateV1]):
    """Another schema (another name) pointed at version 1's tables with ``table=``."""

    n: int = 0
    """Same fields as version 1."""
    lines: tuple[str, ...] = ()
    """Same fields as version 1."""

    def apply(self, update: DocUpdateV1) -> Memo:
        return self


# ----- helpers -------------------------------------------------------------------------------


def dump(path: Path) -> dict[str, list[Any]]:
    """Every row of every table and view of a database file, and their column types."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY table_name"
            ).fetchall()
        ]
        out: dict[str, list[Any]] = {}
        for name in names:
            # As text: Python clients before 2.0.1 need pytz to fetch TIMESTAMPTZ values.
            query = f'SELECT COLUMNS(*)::VARCHAR FROM "{name}" ORDER BY ALL'
            out[name] = con.execute(query).fetchall()
            out[f"{name} columns"] = con.execute(f'DESCRIBE "{name}"').fetchall()
        return out
    finally:
        con.close()


def struct_fields(con: duckdb.DuckDBPyConnection, struct: str, table: str) -> dict[str, str]:
    """The DuckDB type of each field of a STRUCT column."""
    rows = con.execute(f"DESCRIBE SELECT {struct}.* FROM {table}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


@pytest.fixture
def v1_file(tmp_path: Path) -> tuple[Path, list[Checkpoint[DocV1]]]:
    """A file written by version 1: thread t1, steps 0 to 5; and its history, oldest first."""
    path = tmp_path / "docs.duckdb"
    with DuckDBCheckpointer(DocV1, path, snapshot_every=4) as cp:
        runner = Runner(
            DocV1,
            nodes=[write_v1],
            entry="write_v1",
            routes={"write_v1": lambda s: END if s.n >= 5 else "write_v1"},
            checkpointer=cp,
        )
        runner.invoke(DocV1(), thread_id="t1")
        history = list(reversed(cp.history("t1")))
    assert [c.step for c in history] == list(range(6))
    return path, history


# ----- compatible changes --------------------------------------------------------------------


def test_a_schema_that_gained_fields_with_defaults_loads_old_checkpoints(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]],
) -> None:
    path, old = v1_file
    with DuckDBCheckpointer(DocV2, path, snapshot_every=4) as cp:
        for before in old:
            loaded = cp.load_at("t1", before.step)
            assert loaded.state == DocV2(n=before.state.n, lines=before.state.lines)
            assert loaded.state.note == "no note yet"
            assert loaded.state.tags == ("new",)
            assert (loaded.next, loaded.status, loaded.created_at) == (
                before.next,
                before.status,
                before.created_at,
            )
            # Old updates load as the new update type, the new fields left UNSET (not None).
            old_updates = [u for w in before.writes for u in w.updates]
            new_updates = [u for w in loaded.writes for u in w.updates]
            assert new_updates == [DocUpdateV2(n=u.n, lines=u.lines) for u in old_updates]
            assert all(u.note is UNSET for u in new_updates)
        # The view rebuilds the old rows with the defaults too.
        shown = cp.connection.execute(
            "SELECT step, state.lines, state.note, state.tags FROM doc_states "
            "WHERE thread_id = 't1' ORDER BY step"
        ).fetchall()
        assert shown == [(c.step, list(c.state.lines), "no note yet", ["new"]) for c in old]


def test_new_checkpoints_store_the_new_fields(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]],
) -> None:
    path, _ = v1_file
    cp = DuckDBCheckpointer(DocV2, path)
    # The old thread goes on under version 2, and a new thread starts.
    latest = cp.load("t1")
    update = DocUpdateV2(title="renamed", note=None, lines=("more",))
    step6 = Checkpoint(
        thread_id="t1",
        step=6,
        state=latest.state.apply(update),
        next=(),
        writes=(NodeWrite(node="edit", updates=(update,)),),
    )
    cp.save(step6)
    runner = Runner(
        DocV2,
        nodes=[write_v2],
        entry="write_v2",
        routes={"write_v2": lambda s: END if s.n >= 2 else "write_v2"},
        checkpointer=cp,
    )
    done = runner.invoke(DocV2(tags=("a", "b")), thread_id="t2")
    assert done.state == DocV2(
        n=2, lines=("line 0", "line 1"), title="title 1", note=None, tags=("a", "b")
    )
    cp.close()

    with DuckDBCheckpointer(DocV2, path) as reopened:
        assert reopened.load("t1") == step6
        assert reopened.load("t2").state == done.state
        assert reopened.load_at("t1", 6).writes[0].updates[0].note is None
        con = reopened.connection
        # SQL sees the new fields as typed struct fields, old rows and new rows alike.
        assert struct_fields(con, "state", "doc_checkpoints") == {
            "n": "BIGINT",
            "lines": "VARCHAR[]",
            "title": "VARCHAR",
            "note": "VARCHAR",
            "tags": "VARCHAR[]",
        }
        assert struct_fields(con, "value", "doc_updates") == {
            "n": "BIGINT",
            "lines": "VARCHAR[]",
            "title": "VARCHAR",
            "note": "VARCHAR",
        }
        rows = con.execute(
            "SELECT thread_id, step, schema_version, state.title, state.note "
            "FROM doc_checkpoints WHERE step >= 5 OR thread_id = 't2' ORDER BY ALL"
        ).fetchall()
        assert rows == [
            ("t1", 5, 1, None, "no note yet"),  # written by version 1; no title was stored
            ("t1", 6, 2, "renamed", None),
            ("t2", 0, 2, "untitled", "no note yet"),
            ("t2", 1, 2, "title 0", None),
            ("t2", 2, 2, "title 1", None),
        ]
        written = con.execute(
            "SELECT value.title, list_sort(unset) FROM doc_updates "
            "WHERE thread_id = 't1' AND step = 6"
        ).fetchall()
        assert written == [("renamed", ["n"])]
        threads = con.execute(
            "SELECT thread_id, schema_name, schema_version, table_name FROM typedflow_threads "
            "ORDER BY thread_id"
        ).fetchall()
        assert threads == [("t1", "Doc", 1, "doc"), ("t2", "Doc", 2, "doc")]
        assert [(t.thread_id, t.schema_name, t.schema_version) for t in reopened.threads()] == [
            ("t1", "Doc", 1),
            ("t2", "Doc", 2),
        ]


def test_reopening_an_evolved_file_changes_nothing(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]],
) -> None:
    path, _ = v1_file
    DuckDBCheckpointer(DocV2, path).close()
    evolved = dump(path)
    with DuckDBCheckpointer(DocV2, path) as cp:
        history = cp.history("t1")
    assert dump(path) == evolved
    assert [c.state.note for c in history] == ["no note yet"] * 6


# ----- incompatible changes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "field_path", "words"),
    [
        (DocRetyped, "state.n", "changed type from BIGINT to DOUBLE"),
        (DocWithoutLines, "state.lines", "was removed"),
        (DocWithOwner, "state.owner", "without a default"),
        (DocUpdateRetypedState, "update.n", "changed type from BIGINT to VARCHAR"),
        (DocUpdateShrunkState, "update.lines", "was removed"),
    ],
    ids=["retyped", "removed", "added-without-default", "update-retyped", "update-removed"],
)
def test_an_incompatible_schema_is_refused_and_changes_nothing(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]],
    schema: type[StateSchema[Any]],
    field_path: str,
    words: str,
) -> None:
    path, old = v1_file
    before = dump(path)
    with pytest.raises(IncompatibleSchemaError) as info:
        DuckDBCheckpointer(schema, path)
    assert info.value.field == field_path
    message = str(info.value)
    assert f"{field_path} " in message
    assert words in message
    assert "Doc" in message
    # Every stored row, column and view is as it was, and version 1 still loads them.
    assert dump(path) == before
    with DuckDBCheckpointer(DocV1, path) as cp:
        assert list(reversed(cp.history("t1"))) == old


@pytest.mark.parametrize("table", ["doc_checkpoints", "doc_updates"])
def test_an_index_made_by_hand_stops_the_evolution_with_advice_and_changes_nothing(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]], table: str
) -> None:
    """DuckDB alters no table that an index depends on: the error says which index stands in
    the way and what to do, and nothing changes."""
    path, old = v1_file
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE INDEX by_thread ON {table}(thread_id)")
    before = dump(path)
    with pytest.raises(CheckpointError) as info:
        DuckDBCheckpointer(DocV2, path)
    message = str(info.value)
    assert f"table {table!r}" in message
    assert "'by_thread'" in message
    assert "DROP INDEX" in message
    assert dump(path) == before
    # Done as the error says, the file evolves.
    with duckdb.connect(str(path)) as con:
        con.execute("DROP INDEX by_thread")
    with DuckDBCheckpointer(DocV2, path) as cp:
        assert cp.load("t1").state.n == old[-1].state.n


def test_another_schema_on_the_same_tables_is_refused(
    v1_file: tuple[Path, list[Checkpoint[DocV1]]],
) -> None:
    path, _ = v1_file
    before = dump(path)
    with pytest.raises(IncompatibleSchemaError, match="stores schema 'Doc', not 'Memo'") as info:
        DuckDBCheckpointer(Memo, path, table="doc")
    assert "table=" in str(info.value)
    assert dump(path) == before
    # Under its own table name it lives beside the docs.
    with DuckDBCheckpointer(Memo, path) as cp:
        assert cp.table == "memo"
        assert cp.threads() == []


def test_checkpoints_left_in_the_log_by_an_older_version_move_before_the_table_evolves(
    tmp_path: Path,
) -> None:
    path = tmp_path / "docs.duckdb"
    cp1 = DuckDBCheckpointer(DocV1, path, snapshot_every=4)
    for step, state in enumerate([DocV1(), DocV1(n=1, lines=("line 0",))]):
        cp1.save(
            Checkpoint(thread_id="t1", step=step, state=state, next=("write_v1",)),
        )
    # The process dies: the connection goes without moving its log into the typed tables.
    cp1._con.close()
    cp1._closed = True
    with DuckDBCheckpointer(DocV2, path, snapshot_every=4) as cp2:
        assert [c.step for c in cp2.history("t1")] == [1, 0]
        assert cp2.load("t1").state == DocV2(n=1, lines=("line 0",))
