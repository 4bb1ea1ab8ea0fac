"""Every SQL query in docs/sql.md runs against a real file written by examples/analytics.py,
and a few of their answers are checked against what typedflow itself loads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import duckdb
import pytest

from examples.analytics import QUERIES, Triage, generate, report
from typedflow import END, Goto, Interrupt, NodeError, Runner, StateSchema, StepLimitError
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


@contextlib.contextmanager
def reading(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        yield con
    finally:
        con.close()


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
