"""Every SQL query in docs/sql.md runs against a real file written by examples/analytics.py,
and a few of their answers are checked against what typedflow itself loads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import enum
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import duckdb
import pytest

from examples.analytics import QUERIES, Triage, generate, report
from typedflow import END, Goto, Interrupt, NodeError, Runner, StateSchema, StepLimitError, is_set
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "sql.md").read_text(encoding="utf-8")
SQL = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
QUERIES_IN_DOCS: list[str] = SQL.findall(DOC)
PYTHON_IN_DOCS: list[str] = re.findall(r"^```python\n(.*?)^```", DOC, re.MULTILINE | re.DOTALL)

CRASH = """
import itertools, os, sys
from examples.analytics import Triage, build_runner, ticket
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

cp = DuckDBCheckpointer(Triage, sys.argv[1])
steps = build_runner(cp).stream(Triage(ticket=ticket(9999)), thread_id="crashed")
for _ in itertools.islice(steps, 3):
    pass
os._exit(0)  # as if killed: no close, no move of the log
"""
"""A child that commits three checkpoints of a new thread and stops before they are moved."""

HOLD = """
import sys
from examples.analytics import Triage
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

with DuckDBCheckpointer(Triage, sys.argv[1]):
    print("open", flush=True)
    sys.stdin.readline()
"""
"""A child that keeps a checkpointer open on a file until it reads a line."""

OPEN = """
import sys
from examples.analytics import Triage
from typedflow import StoreLockedError
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

try:
    DuckDBCheckpointer(Triage, sys.argv[1]).close()
except StoreLockedError as exc:
    print("refused:", exc)
"""
"""A child that tries to open a checkpointer on a file."""


def child(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy(source: Path, target: Path) -> Path:
    """Copy a DuckDB file, with its write-ahead log if it has one (a crash leaves one)."""
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))
    return target


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "triage.duckdb"
    counts = asyncio.run(generate(path, 160))
    assert counts["failed"] > 0
    assert counts["forked"] > 0
    return path


@pytest.fixture(scope="module")
def crashed(database: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the triage file after a crash: three checkpoints are still in the log."""
    path = copy(database, tmp_path_factory.mktemp("crashed") / "triage.duckdb")
    result = child(CRASH, path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def contacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the Python example of docs/sql.md writes."""
    (code,) = PYTHON_IN_DOCS
    folder = tmp_path_factory.mktemp("contacts")
    # A module of its own, so that attrs and typing can resolve the example's classes.
    module = types.ModuleType("sql_doc_example")
    sys.modules[module.__name__] = module
    try:
        with contextlib.chdir(folder):
            exec(compile(code, "<docs/sql.md>", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return folder / "contacts.duckdb"


@contextlib.contextmanager
def reading(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        yield con
    finally:
        con.close()


def documented(start: str) -> str:
    """The documented query that starts with ``start``."""
    (sql,) = [q for q in QUERIES_IN_DOCS if q.startswith(start)]
    return sql


def test_docs_have_the_queries_the_contract_promises() -> None:
    assert len(QUERIES_IN_DOCS) >= 6


@pytest.mark.parametrize(
    "sql", QUERIES_IN_DOCS, ids=[f"query{i}" for i in range(len(QUERIES_IN_DOCS))]
)
def test_documented_query_runs(crashed: Path, contacts: Path, sql: str) -> None:
    with reading(contacts if "contact_" in sql else crashed) as con:
        rows = con.sql(sql).fetchall()
    assert rows, f"the documented query returned nothing:\n{sql}"


def test_answers_match_what_typedflow_loads(database: Path) -> None:
    with reading(database) as con:
        per_node = dict(
            con.sql("SELECT node, count(*) FROM triage_writes GROUP BY node").fetchall()
        )
        failed = {
            row[0]
            for row in con.sql(
                "SELECT thread_id FROM triage_checkpoints "
                "QUALIFY step = max(step) OVER (PARTITION BY thread_id) AND status = 'error'"
            ).fetchall()
        }
        states = con.sql(
            "SELECT thread_id, step, state.notes, state.attempts FROM triage_states"
        ).fetchall()
        replies = {
            node: (left, none, some)
            for node, left, none, some in con.sql(
                documented("SELECT node,\n       count(*) FILTER")
            ).fetchall()
        }
        spans = {
            tid: (steps, elapsed, busy)
            for tid, steps, elapsed, busy in con.sql(
                documented("SELECT thread_id,\n       count(*) AS steps").replace("LIMIT 10", "")
            ).fetchall()
        }
    with DuckDBCheckpointer(Triage, database) as cp:
        counted: collections.Counter[str] = collections.Counter()
        loaded_failed = set()
        loaded_states = {}
        loaded_replies: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        loaded_spans = {}
        for info in cp.threads():
            history = cp.history(info.thread_id)
            for c in history:
                counted.update(w.node for w in c.writes)
                loaded_states[(c.thread_id, c.step)] = (list(c.state.notes), c.state.attempts)
                for w in c.writes:
                    for u in w.updates:
                        kind = 0 if not is_set(u.reply) else 1 if u.reply is None else 2
                        loaded_replies[w.node][kind] += 1
            if info.status == "error":
                loaded_failed.add(info.thread_id)
            loaded_spans[info.thread_id] = (
                len(history),
                history[0].created_at - history[-1].created_at,
                sum(c.duration for c in history),
            )
    assert per_node == dict(counted)
    assert failed == loaded_failed
    assert {(t, s): (n, a) for t, s, n, a in states} == loaded_states
    assert replies == {node: tuple(kinds) for node, kinds in loaded_replies.items()}
    assert replies["draft"][1] > 0  # some drafts set the reply to None: the case tested
    assert spans.keys() == loaded_spans.keys()
    for tid, (steps, elapsed, busy) in spans.items():
        assert (steps, elapsed) == loaded_spans[tid][:2]
        assert busy == pytest.approx(loaded_spans[tid][2])


def test_the_failed_threads_query_says_how_long_the_node_ran(database: Path) -> None:
    with reading(database) as con:
        rows = con.sql(documented("SELECT c.thread_id, c.step, f.node")).fetchall()
    assert rows
    with DuckDBCheckpointer(Triage, database) as cp:
        for tid, step, node, error_type, message, ran_ms in rows:
            (failure,) = cp.load_at(tid, step).failures
            assert (failure.node, failure.error_type, failure.message) == (
                node,
                error_type,
                message,
            )
            assert failure.duration is not None  # the node raised: it was timed
            assert ran_ms == round(1000 * failure.duration, 3)


def test_the_documented_node_counts_leave_out_resume_and_fork_writes(database: Path) -> None:
    with reading(database) as con:
        nodes = {row[0] for row in con.sql(documented("SELECT node, count(*) AS runs")).fetchall()}
        all_nodes = {row[0] for row in con.sql("SELECT node FROM triage_writes").fetchall()}
    assert "__fork__" in all_nodes
    assert nodes == all_nodes - {"__fork__"}


def test_the_log_queries_find_what_a_crash_left_unmoved(crashed: Path, tmp_path: Path) -> None:
    path = copy(crashed, tmp_path / "triage.duckdb")  # opened by typedflow below
    with reading(path) as con:
        unmoved = con.sql(documented("SELECT thread_id, step,\n       payload")).fetchall()
        latest = con.sql(
            documented("SELECT thread_id, step, status, in_log").replace("LIMIT 20", "")
        ).fetchall()
        typed = con.sql("SELECT count(*) FROM triage_checkpoints").fetchall()
        threads = con.sql("SELECT thread_id FROM typedflow_threads").fetchall()
    assert [row[:3] for row in unmoved] == [
        ("crashed", 0, "ok"),
        ("crashed", 1, "ok"),
        ("crashed", 2, "ok"),
    ]
    assert [row[4] for row in unmoved] == [[], ["classify"], ["search_docs", "customer_history"]]
    assert all(isinstance(row[3], datetime.datetime) and row[5] == 0 for row in unmoved)
    # One latest row per thread, each listed among the threads (the crashed one already,
    # though none of its rows is in the typed tables); only the crashed one is in the log.
    assert sorted(row[0] for row in latest) == sorted(row[0] for row in threads)
    assert [row for row in latest if row[3]] == [("crashed", 2, "ok", True)]
    # Opening the file with typedflow moves them, and the answers stay the same.
    with DuckDBCheckpointer(Triage, path):
        pass
    with reading(path) as con:
        assert con.sql("SELECT count(*) FROM triage_log").fetchall() == [(0,)]
        moved = con.sql(
            "SELECT thread_id, step, status FROM triage_checkpoints "
            "WHERE thread_id = 'crashed' ORDER BY step"
        ).fetchall()
        assert con.sql("SELECT count(*) FROM triage_checkpoints").fetchall() == [(typed[0][0] + 3,)]
    assert moved == [row[:3] for row in unmoved]


def test_the_json_example_reads_unions_and_tuples(contacts: Path) -> None:
    with reading(contacts) as con:
        states = con.sql(documented("SELECT step,\n       state.via")).fetchall()
        updates = con.sql(documented("SELECT step, node, seq, value->>'_type'")).fetchall()
        types_ = dict(
            con.sql(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE table_name = 'contact_updates'"
            ).fetchall()
        )
    assert states == [
        (0, None, None, None, "0", 0),
        (1, "Phone", "+351 210 000 000", 3, "3", 3),
    ]
    assert updates == [(1, "reach", 0, "Email", "ana@example.com"), (1, "reach", 1, "Phone", None)]
    assert types_["value"] == "JSON"


def test_a_file_open_in_a_checkpointer_shuts_out_an_analyst(database: Path, tmp_path: Path) -> None:
    path = copy(database, tmp_path / "triage.duckdb")
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(duckdb.IOException, match="Could not set lock on file"):
            duckdb.connect(str(path), read_only=True)
        holder.stdin.write("done\n")
        holder.stdin.flush()
        _, err = holder.communicate(timeout=120)
        assert holder.returncode == 0, err
    with reading(path) as con:  # once it has closed the file, the analyst gets in
        assert con.sql("SELECT count(*) FROM typedflow_threads").fetchall()[0][0] > 0


def test_an_analyst_reading_the_file_shuts_out_a_checkpointer(
    database: Path, tmp_path: Path
) -> None:
    path = copy(database, tmp_path / "triage.duckdb")
    with reading(path):
        result = child(OPEN, path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:")
    assert "in use by another process" in result.stdout


@attrs.frozen
class Add:
    by: int


@attrs.frozen
class Tally(StateSchema[Add]):
    n: int = 0

    def apply(self, update: Add) -> Tally:
        return attrs.evolve(self, n=self.n + update.by)


FAIL = {"boom": True}


@Tally.node
def start(state: Tally) -> Goto[Add]:
    return Goto(["side", "ask"], update=Add(1))


@Tally.node
def side(state: Tally) -> Add:
    return Add(10)


@Tally.node
def ask(state: Tally) -> Goto[Add] | Interrupt:
    if FAIL["boom"] and state.n > 1000:
        raise ValueError("boom")
    return Interrupt("need input") if state.n < 100 else Goto(END, update=Add(0))


def test_steps_read_as_documented(tmp_path: Path) -> None:
    """The steps of interrupts, failures, resumes, forks and step limits, read in SQL (as
    docs/sql.md describes them under "How steps read")."""
    path = tmp_path / "tally.duckdb"
    with DuckDBCheckpointer(Tally, path) as cp:
        runner = Runner(Tally, nodes=[start, side, ask], entry="start", checkpointer=cp)
        runner.invoke(Tally(), thread_id="inside")  # ask interrupts from inside
        runner.resume("inside", update=Add(100))
        Runner(
            Tally,
            nodes=[start, side, ask],
            entry="start",
            checkpointer=cp,
            interrupt_before=["ask"],
        ).invoke(Tally(), thread_id="before")
        with pytest.raises(NodeError):
            runner.invoke(Tally(n=2000), thread_id="failed")
        FAIL["boom"] = False
        try:
            runner.resume("failed")
        finally:
            FAIL["boom"] = True
        runner.fork("inside", 1, "forked", update=Add(5))
        loop = Runner(Tally, nodes=[side], entry="side", edges={"side": "side"}, checkpointer=cp)
        with pytest.raises(StepLimitError):
            loop.invoke(Tally(), thread_id="loop", step_limit=2)
    with reading(path) as con:

        def rows(sql: str) -> list[Any]:  # DuckDB rows: tuples of Python values
            return con.sql(sql).fetchall()

        steps = (
            "SELECT thread_id, step, status, nodes, next, reason, writes, pending "
            "FROM tally_checkpoints"
        )
        by_step = {(r[0], r[1]): r[2:] for r in rows(steps)}
        # Stopped from inside a node: the step did not complete.
        status, nodes, next_, reason, writes, pending = by_step[("inside", 2)]
        assert (status, nodes, next_, reason, writes) == (
            "interrupted",
            ["side"],
            ["side", "ask"],
            "ask: need input",
            [],
        )
        assert [w["node"] for w in pending] == ["side"]
        # The resume update is a step of its own; the kept write is applied by the next one,
        # with the duration it had, and END reads '__end__'.
        after = rows(
            "SELECT step, node, goto, duration FROM tally_writes WHERE thread_id = 'inside' "
            "AND step >= 3 ORDER BY step, position"
        )
        assert [row[:3] for row in after] == [
            (3, "__resume__", None),
            (4, "side", None),
            (4, "ask", ["__end__"]),
        ]
        assert [row[3] for row in after[:2]] == [0.0, pending[0]["duration"]]
        # Stopped by interrupt_before: the step completed.
        status, nodes, next_, reason, writes, pending = by_step[("before", 1)]
        assert (status, nodes, reason, pending) == (
            "interrupted",
            ["start"],
            "before node 'ask'",
            [],
        )
        assert [w["node"] for w in writes] == ["start"]
        # A failed step lists the nodes that finished, then those that failed; its kept
        # updates are stored twice, and `NOT pending` counts them once.
        status, nodes, *_ = by_step[("failed", 2)]
        assert (status, nodes) == ("error", ["side", "ask"])
        assert rows(
            "SELECT step, pending FROM tally_updates WHERE thread_id = 'failed' AND node = 'side' "
            "ORDER BY step"
        ) == [(2, True), (3, False)]
        # A fork starts at the step it was forked at, with its update as a `__fork__` write.
        assert rows(
            "SELECT step, nodes, parent_thread_id, parent_step FROM tally_checkpoints "
            "WHERE thread_id = 'forked' ORDER BY step"
        ) == [(1, ["__fork__"], "inside", 1)]
        # Stopped at the step limit: the latest step is ok and has a next.
        assert rows(
            "SELECT step, status, next FROM tally_checkpoints WHERE thread_id = 'loop' "
            "QUALIFY step = max(step) OVER ()"
        ) == [(2, "ok", ["side"])]


def test_the_example_report_prints_every_query(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report(database)
    out = capsys.readouterr().out
    for title in QUERIES:
        assert f"-- {title}" in out
    assert "draft | builtins.RuntimeError" in out


def test_the_example_counts_a_fork_that_fails_and_goes_on(tmp_path: Path) -> None:
    # Ticket 550 trips the drafting model, in its own run and in the fork of it.
    counts = asyncio.run(generate(tmp_path / "triage.duckdb", 1, first=550))
    assert counts == {"completed": 0, "failed": 2, "forked": 1}


def test_the_writes_view_numbers_positions_as_the_updates_table_does(database: Path) -> None:
    with reading(database) as con:
        types_ = con.sql(
            "SELECT table_name, data_type FROM duckdb_columns() WHERE column_name = 'position' "
            "AND table_name IN ('triage_writes', 'triage_updates') ORDER BY table_name"
        ).fetchall()
        unmatched = con.sql(
            "SELECT count(*) FROM triage_updates u ANTI JOIN triage_writes w "
            "USING (thread_id, step, position, node) WHERE NOT u.pending"
        ).fetchall()
    assert types_ == [("triage_updates", "INTEGER"), ("triage_writes", "INTEGER")]
    assert unmatched == [(0,)]  # every applied update is found under its write


def test_the_states_view_carries_what_comes_next_and_why(database: Path) -> None:
    with reading(database) as con:
        columns = [
            row[0]
            for row in con.sql(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'triage_states' "
                "ORDER BY column_index"
            ).fetchall()
        ]
        differing = con.sql(
            "SELECT count(*) FROM triage_states s JOIN triage_checkpoints c "
            "USING (thread_id, step) WHERE s.next IS DISTINCT FROM c.next "
            "OR s.reason IS DISTINCT FROM c.reason OR s.metadata IS DISTINCT FROM c.metadata"
        ).fetchall()
        rows = con.sql("SELECT count(*) FROM triage_states WHERE reason IS NOT NULL").fetchall()
    assert columns[-3:] == ["next", "reason", "metadata"]
    assert differing == [(0,)]
    assert rows[0][0] > 0  # the file has interrupted or failed steps, which say why


class Level(enum.Enum):
    """An enum key of a MAP column: ``LOW`` and ``HIGH``."""

    LOW = "low"
    HIGH = "high"


@attrs.frozen
class Bump:
    """Sets every field of :class:`Shapes` at once."""

    by: int = 1


@attrs.frozen
class Shapes(StateSchema[Bump]):
    """Sets and non-str dict keys, as the type map of docs/sql.md lists them."""

    schema_version = 3
    tags: set[int] = attrs.field(factory=set)
    names: frozenset[str] = frozenset()
    by_id: dict[int, str] = attrs.field(factory=dict)
    by_level: dict[Level, int] = attrs.field(factory=dict)

    def apply(self, update: Bump) -> Shapes:
        return Shapes(
            tags={update.by, 2},
            names=frozenset({"a"}),
            by_id={update.by: "one"},
            by_level={Level.HIGH: update.by},
        )


@Shapes.node
def bump(state: Shapes) -> Bump:
    return Bump(1)


def test_sets_and_dict_keys_are_stored_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "shapes.duckdb"
    with DuckDBCheckpointer(Shapes, path) as cp:
        Runner(Shapes, nodes=[bump], entry="bump", checkpointer=cp).invoke(Shapes(), thread_id="s")
        state = cp.load("s").state
    assert state == Shapes(
        tags={1, 2}, names=frozenset({"a"}), by_id={1: "one"}, by_level={Level.HIGH: 1}
    )
    assert type(state.tags) is set
    assert type(state.names) is frozenset
    with reading(path) as con:
        state_type = con.sql(
            "SELECT data_type FROM duckdb_columns() "
            "WHERE table_name = 'shapes_checkpoints' AND column_name = 'state'"
        ).fetchall()
        row = con.sql(
            "SELECT list_sort(state.tags), state.by_id[1], state.by_level['high'] "
            "FROM shapes_checkpoints WHERE step = 1"
        ).fetchall()
        versions = con.sql(
            "SELECT t.schema_name, t.schema_version, c.schema_version FROM typedflow_threads t "
            "JOIN shapes_checkpoints c USING (thread_id) WHERE c.step = 1"
        ).fetchall()
    assert state_type == [
        (
            'STRUCT(tags BIGINT[], "names" VARCHAR[], by_id MAP(BIGINT, VARCHAR), '
            "by_level MAP(VARCHAR, BIGINT))",
        )
    ]
    assert row == [([1, 2], "one", 1)]
    assert versions == [("Shapes", 3, 3)]


class Outer:
    """Holds a schema class, whose qualified name is ``Outer.Inner``."""

    @attrs.frozen
    class Inner(StateSchema[Bump]):
        """A schema defined in a class."""

        n: int = 0

        def apply(self, update: Bump) -> Outer.Inner:
            return Outer.Inner(self.n + update.by)


def test_tables_are_named_after_the_qualified_name() -> None:
    def make() -> type[Outer.Inner]:
        @attrs.frozen
        class LocalState(Outer.Inner):
            pass

        return LocalState

    local = make()
    with DuckDBCheckpointer(Outer.Inner, ":memory:") as cp:
        assert cp.table == "outer_inner"
    with DuckDBCheckpointer(local, ":memory:") as cp:
        assert cp.table == (
            "test_tables_are_named_after_the_qualified_name_<locals>_make_<locals>_local_state"
        )
        counted = cp.connection.sql(f'SELECT count(*) FROM "{cp.table}_checkpoints"').fetchall()
        assert counted == [(0,)]  # a name with <locals> must be quoted
    with DuckDBCheckpointer(local, ":memory:", table="local") as cp:
        assert cp.connection.sql("SELECT count(*) FROM local_checkpoints").fetchall() == [(0,)]
