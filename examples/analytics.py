"""Analytics over thousands of runs: SQL on typedflow's DuckDB tables.

A support-ticket triage workflow runs for a few thousand generated tickets
(some fail, some are forked to try a different priority), stored with batched
durability in one DuckDB file. Then plain SQL answers questions about the
runs: no typedflow import is needed to read the tables.

Run it with ``python -m examples.analytics [file.duckdb] [number of runs]``.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import sys
import time
from pathlib import Path

import attrs
import duckdb

from typedflow import END, UNSET, Goto, NodeError, Runner, StateSchema, Unset, field
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.reducers import add, append


class Priority(enum.Enum):
    """How urgent a ticket is: ``low``, ``normal`` or ``high``."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@attrs.frozen
class Ticket:
    """A customer's support ticket."""

    id: str
    """The ticket id."""
    customer: str
    """Who wrote it."""
    text: str
    """What they wrote."""


@attrs.frozen
class TriageUpdate:
    """An update to a triage state; unset fields change nothing."""

    category: str | Unset = UNSET
    """Replaces the category."""
    priority: Priority | Unset = UNSET
    """Replaces the priority."""
    notes: str | Unset = UNSET
    """Appended to the notes."""
    attempts: int | Unset = UNSET
    """Added to the attempts."""
    reply: str | Unset | None = UNSET
    """Replaces the reply."""


@attrs.frozen
class Triage(StateSchema[TriageUpdate]):
    """The state of one ticket's triage."""

    ticket: Ticket
    """The ticket being handled."""
    category: str = ""
    """billing, bug, account or question."""
    priority: Priority = Priority.NORMAL
    """How urgent it is."""
    notes: tuple[str, ...] = field(default=(), reducer=append)
    """What each node found."""
    attempts: int = field(default=0, reducer=add)
    """How many replies were drafted."""
    reply: str | None = None
    """The reply sent to the customer."""


CATEGORIES = ("billing", "bug", "account", "question")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@Triage.node
def classify(state: Triage) -> Goto[TriageUpdate]:
    """Pick a category and a priority, then look things up in parallel."""
    h = _digest(state.ticket.text)
    priority = (
        Priority.HIGH if "urgent" in state.ticket.text else (Priority.LOW, Priority.NORMAL)[h % 2]
    )
    return Goto(
        ["search_docs", "customer_history"],
        update=TriageUpdate(category=CATEGORIES[h % 4], priority=priority, notes="classified"),
    )


@Triage.node
async def search_docs(state: Triage) -> TriageUpdate:
    """Find help articles for the category (a stand-in for a search call)."""
    await asyncio.sleep(0)
    return TriageUpdate(notes=f"docs for {state.category}")


@Triage.node
async def customer_history(state: Triage) -> TriageUpdate:
    """Look up the customer's earlier tickets (a stand-in for a database call)."""
    await asyncio.sleep(0)
    return TriageUpdate(notes=f"{_digest(state.ticket.customer) % 5} earlier tickets")


@Triage.node
def draft(state: Triage) -> TriageUpdate:
    """Draft a reply; one ticket in forty trips a bug in the drafting model."""
    if _digest(state.ticket.id + "draft") % 40 == 0:
        raise RuntimeError(f"the drafting model timed out on ticket {state.ticket.id}")
    good = _digest(f"{state.ticket.id}/{state.attempts}") % 3 != 0
    return TriageUpdate(attempts=1, reply=f"Re: {state.category}" if good else None)


@Triage.node
def escalate(state: Triage) -> TriageUpdate:
    """Hand a high-priority ticket to a person."""
    return TriageUpdate(notes="escalated to on-call", reply="A person will call you shortly.")


def after_draft(state: Triage) -> str:
    """Retry a failed draft up to three times, then escalate."""
    if state.reply is not None:
        return "escalate" if state.priority is Priority.HIGH else END
    return "draft" if state.attempts < 3 else "escalate"


def build_runner(checkpointer: DuckDBCheckpointer[Triage]) -> Runner[Triage]:
    """The triage graph on a checkpointer."""
    return Runner(
        Triage,
        nodes=[classify, search_docs, customer_history, draft, escalate],
        entry="classify",
        edges={"search_docs": "draft", "customer_history": "draft", "escalate": END},
        routes={"draft": after_draft},
        checkpointer=checkpointer,
    )


def ticket(i: int) -> Ticket:
    """The i-th generated ticket."""
    words = ("refund", "crash", "login", "invoice", "urgent", "slow", "password", "export")
    text = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(3))
    return Ticket(id=f"T{i:05d}", customer=f"customer-{i % 97}", text=text)


async def generate(path: str | Path, runs: int, *, first: int = 0) -> dict[str, int]:
    """Run ``runs`` tickets (from the ``first``-th) into a DuckDB file; fork every 50th run
    with a high priority."""
    counts = {"completed": 0, "failed": 0, "forked": 0}
    with DuckDBCheckpointer(Triage, path, durability="batch") as cp:
        runner = build_runner(cp)
        for i in range(first, first + runs):
            tid = f"ticket-{i:05d}"
            try:
                await runner.ainvoke(
                    Triage(ticket=ticket(i)), thread_id=tid, metadata={"batch": i // 500}
                )
                counts["completed"] += 1
            except NodeError:
                counts["failed"] += 1
            if i % 50 == 0:
                runner.fork(tid, 1, f"{tid}-high", update=TriageUpdate(priority=Priority.HIGH))
                counts["forked"] += 1
                try:
                    await runner.aresume(f"{tid}-high")
                except NodeError:
                    counts["failed"] += 1  # a fork's run fails like any other
    return counts


QUERIES = {
    "runs per status of their last step": """
        SELECT c.status, count(*) AS threads
        FROM triage_checkpoints c
        JOIN (SELECT thread_id, max(step) AS step FROM triage_checkpoints GROUP BY thread_id)
          USING (thread_id, step)
        GROUP BY c.status ORDER BY threads DESC""",
    "node latency percentiles (ms)": """
        SELECT node, count(*) AS runs,
               round(1000 * quantile_cont(duration, 0.5), 3) AS p50_ms,
               round(1000 * quantile_cont(duration, 0.99), 3) AS p99_ms
        FROM triage_writes WHERE node NOT IN ('__resume__', '__fork__')
        GROUP BY node ORDER BY node""",
    "replies drafted per category": """
        SELECT state.category, round(avg(state.attempts), 2) AS avg_attempts, count(*) AS threads
        FROM triage_states s
        JOIN (SELECT thread_id, max(step) AS step FROM triage_checkpoints GROUP BY thread_id)
          USING (thread_id, step)
        GROUP BY ALL ORDER BY threads DESC""",
    "what failed, and where": """
        SELECT f.node, f.error_type, count(*) AS failures,
               round(1000 * avg(f.duration), 3) AS avg_ms_before_failing
        FROM triage_checkpoints, unnest(failures) AS u(f)
        GROUP BY ALL ORDER BY failures DESC""",
    "forks and their origins": """
        SELECT parent_thread_id IS NOT NULL AS forked, count(*) AS threads
        FROM typedflow_threads GROUP BY ALL ORDER BY forked""",
}


def report(path: str | Path) -> None:
    """Print the answers of the example queries, using DuckDB alone."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        for title, sql in QUERIES.items():
            print(f"\n-- {title}")
            result = con.sql(sql)
            print(" | ".join(result.columns))
            for row in result.fetchall():
                print(" | ".join(str(v) for v in row))
    finally:
        con.close()


def main(argv: list[str] | None = None) -> None:
    """Generate runs into a fresh file and print the report."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "analytics.duckdb")
    runs = int(args[1]) if len(args) > 1 else 2000
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    counts = asyncio.run(generate(path, runs))
    elapsed = time.perf_counter() - started
    print(f"{runs} runs in {elapsed:.1f} s: {counts} -> {path}")
    report(path)


if __name__ == "__main__":
    main()
