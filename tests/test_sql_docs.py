"""Every SQL query in docs/sql.md runs against a real file written by examples/analytics.py,
and a few of their answers are checked against what typedflow itself loads."""

from __future__ import annotations

import asyncio
import collections
import re
from pathlib import Path

import duckdb
import pytest

from examples.analytics import QUERIES, Triage, generate, report
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

ROOT = Path(__file__).resolve().parent.parent
SQL = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
QUERIES_IN_DOCS = SQL.findall((ROOT / "docs" / "sql.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sql") / "triage.duckdb"
    counts = asyncio.run(generate(path, 160))
    assert counts["failed"] > 0
    assert counts["forked"] > 0
    return path


def test_docs_have_the_queries_the_contract_promises() -> None:
    assert len(QUERIES_IN_DOCS) >= 6


@pytest.mark.parametrize(
    "sql", QUERIES_IN_DOCS, ids=[f"query{i}" for i in range(len(QUERIES_IN_DOCS))]
)
def test_documented_query_runs(database: Path, sql: str) -> None:
    con = duckdb.connect(str(database), read_only=True)
    try:
        rows = con.sql(sql).fetchall()
    finally:
        con.close()
    assert rows, f"the documented query returned nothing:\n{sql}"


def test_answers_match_what_typedflow_loads(database: Path) -> None:
    con = duckdb.connect(str(database), read_only=True)
    try:
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
    finally:
        con.close()
    with DuckDBCheckpointer(Triage, database) as cp:
        counted: collections.Counter[str] = collections.Counter()
        loaded_failed = set()
        loaded_states = {}
        for info in cp.threads():
            for c in cp.history(info.thread_id):
                counted.update(w.node for w in c.writes)
                loaded_states[(c.thread_id, c.step)] = (list(c.state.notes), c.state.attempts)
            if info.status == "error":
                loaded_failed.add(info.thread_id)
    assert per_node == dict(counted)
    assert failed == loaded_failed
    assert {(t, s): (n, a) for t, s, n, a in states} == loaded_states


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
