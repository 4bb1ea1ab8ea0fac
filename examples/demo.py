"""The main demo: agent runs on an embedded DuckDB file, then SQL over their history.

Several conversations of the agent in ``examples/agent.py`` run with a
``DuckDBCheckpointer`` on one file: most are approved, one is declined, one is
left waiting for its approval (interrupted), and one is forked at its approval
step to try the other decision. Then the demo closes the checkpointer, opens
the file with plain ``duckdb`` (no typedflow) and prints the answers of a few
of the queries documented in ``docs/sql.md``.

Run it with ``scripts/demo`` or ``python -m examples.demo [file.duckdb]``. The
demo starts from a fresh file, so it deletes the file it is given (and its
``.wal``) first, but only a file that an earlier run of the demo wrote: one
whose tables and views are all the demo's and whose threads are all the
demo's. It refuses any other existing file, so that a database of yours given
by mistake is never lost.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import duckdb

from examples.agent import AgentState, AgentUpdate, build_runner, run_thread
from typedflow import Completed, Interrupted
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

QUESTIONS = {
    "lunch-lisbon": "Can we have lunch outside in Lisbon on Friday?",
    "walk-oslo": "Shall we walk in Oslo on Monday?",
    "picnic-porto": "A picnic in Porto on Friday?",
}

TABLE = "agent_state"
"""The prefix of the demo's tables (the default for ``AgentState``)."""

DEMO_TABLES = frozenset(
    {"typedflow_threads", "typedflow_tables"}
    | {f"{TABLE}_{kind}" for kind in ("checkpoints", "updates", "log", "states", "writes")}
)
"""The tables and views a file written by the demo holds, and nothing else."""

DEMO_THREADS = frozenset({*QUESTIONS, "dinner-rome", "lunch-lisbon-declined"})
"""The threads the demo writes."""

QUERIES = {
    "threads, their last step and status": """
        SELECT t.thread_id, c.step, c.status, t.parent_thread_id AS forked_from, t.parent_step
        FROM typedflow_threads AS t
        JOIN agent_state_checkpoints AS c USING (thread_id)
        QUALIFY c.step = max(c.step) OVER (PARTITION BY c.thread_id)
        ORDER BY t.created_at, t.thread_id""",
    "the question and answer of each finished thread (typed STRUCT fields)": """
        SELECT thread_id, state.question, state.approved, state.answer
        FROM agent_state_checkpoints
        WHERE len(next) = 0 AND status = 'ok'
        ORDER BY thread_id""",
    "which nodes ran together in one step (the parallel tools)": """
        SELECT thread_id, step, nodes
        FROM agent_state_checkpoints
        WHERE len(nodes) > 1
        ORDER BY thread_id, step""",
    "node latency percentiles (ms)": """
        SELECT node, count(*) AS runs,
               round(1000 * quantile_cont(duration, 0.5), 3) AS p50_ms,
               round(1000 * quantile_cont(duration, 0.9), 3) AS p90_ms
        FROM agent_state_writes WHERE node NOT IN ('__resume__', '__fork__')
        GROUP BY node ORDER BY node""",
    "what the human decided, as recorded updates": """
        SELECT thread_id, step, node, value.approved
        FROM agent_state_updates
        WHERE node IN ('__resume__', '__fork__')
        ORDER BY thread_id""",
    "messages per thread, from the full states view": """
        SELECT thread_id, max(len(state.messages)) AS messages
        FROM agent_state_states
        GROUP BY thread_id ORDER BY thread_id""",
}


def why_not_replace(path: Path) -> str | None:
    """Why the demo must not delete ``path`` (and its ``.wal``); None when it may.

    The demo deletes only what an earlier run of it wrote: a DuckDB file whose tables and
    views are all the demo's and whose threads are all the demo's (an unfinished earlier run
    included). Anything else may be a file of the user's, given by mistake.
    """
    wal = path.with_name(path.name + ".wal")
    if not path.exists():
        if wal.exists():
            return f"{wal} exists without {path.name}"
        return None
    if not path.is_file():
        return f"{path} exists and is not a file"
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        return f"{path} exists and DuckDB cannot open it ({exc})"
    try:
        names = {
            row[0] for row in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        }
        if "typedflow_threads" not in names or not names <= DEMO_TABLES:
            return f"{path} exists and holds tables the demo did not make"
        threads = {row[0] for row in con.sql("SELECT thread_id FROM typedflow_threads").fetchall()}
        if not threads <= DEMO_THREADS:
            return f"{path} exists and holds threads the demo did not write"
    finally:
        con.close()
    return None


def run(path: Path) -> None:
    """Write the demo's threads into ``path``."""
    with DuckDBCheckpointer(AgentState, path, table=TABLE) as checkpointer:
        runner = build_runner(checkpointer)
        for thread_id, question in QUESTIONS.items():
            state = run_thread(runner, thread_id, question, approve=thread_id != "walk-oslo")
            print(f"{thread_id}: {state.answer}")
        waiting = runner.invoke(
            AgentState(question="Dinner in Rome on Sunday?"), thread_id="dinner-rome"
        )
        assert isinstance(waiting, Interrupted)
        print(f"dinner-rome: waiting for a human ({waiting.reason})")
        # Time travel: take the approval step of lunch-lisbon again, deciding the other way.
        interrupt_step = next(
            cp.step for cp in checkpointer.history("lunch-lisbon") if cp.status == "interrupted"
        )
        checkpointer.fork(
            "lunch-lisbon",
            interrupt_step,
            "lunch-lisbon-declined",
            update=AgentUpdate(approved=False),
        )
        forked = runner.resume("lunch-lisbon-declined")
        assert isinstance(forked, Completed)
        print(f"lunch-lisbon-declined (forked at step {interrupt_step}): {forked.state.answer}")


def report(path: Path) -> None:
    """Print the answers of the queries, reading the file with DuckDB alone."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        for title, sql in QUERIES.items():
            print(f"\n-- {title}")
            result = con.sql(sql)
            print(" | ".join(result.columns))
            for row in result.fetchall():
                print(" | ".join(str(value) for value in row))
    finally:
        con.close()


def main(argv: list[str] | None = None) -> None:
    """Run the demo on a fresh file (``runs.duckdb`` unless given) and print the report.

    Raises:
        SystemExit: more than one argument, or the file exists and is not one the demo
            wrote (nothing is deleted).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        raise SystemExit("usage: python -m examples.demo [file.duckdb]")
    path = Path(args[0] if args else "runs.duckdb").absolute()
    refusal = why_not_replace(path)
    if refusal is not None:
        raise SystemExit(
            f"demo: {refusal}. The demo deletes the file it writes to before it runs, so it "
            "only replaces a file an earlier demo wrote: give it a new path."
        )
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    run(path)
    report(path)
    print(f"\nThe history is in {path}; docs/sql.md describes its tables and more queries.")
    print("Read it from Python (the duckdb module is installed with typedflow[duckdb]):")
    print("    import duckdb")
    print(f"    con = duckdb.connect({str(path)!r}, read_only=True)")
    print('    con.sql("SELECT thread_id, step, status FROM agent_state_checkpoints").show()')
    print("or with the DuckDB command-line tool, which is installed separately (see duckdb.org):")
    print(f"    duckdb -readonly {shlex.quote(str(path))}")


if __name__ == "__main__":
    main()
