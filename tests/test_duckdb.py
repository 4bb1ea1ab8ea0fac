"""DuckDB backend: growing fields stored as deltas, durability modes, group commit, locking,
shared connections and files, and a light import."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs
import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from typedflow import (
    END,
    UNSET,
    Checkpoint,
    CheckpointError,
    Completed,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    Interrupted,
    Node,
    NodeError,
    NodeWrite,
    Runner,
    SerializationError,
    StateSchema,
    StepNotFoundError,
    StoreLockedError,
    ThreadNotFoundError,
    Unset,
    field,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer, Durability
from typedflow.reducers import add, merge_by_key
from typedflow.testing import ContractState, make_checkpoint

T0 = datetime(2025, 6, 1, tzinfo=UTC)


@attrs.frozen
class Message:
    """One chat message; its id decides whether an update appends it or rewrites it."""

    id: int
    """The message id."""
    text: str
    """The text."""


def message_id(message: Message) -> int:
    """The key that ``merge_by_key`` upserts messages by."""
    return message.id


@attrs.frozen
class ChatUpdate:
    """The update type of :class:`Chat`."""

    messages: tuple[Message, ...] | Unset = UNSET
    """Upserted into ``messages`` by id."""
    notes: tuple[str, ...] | Unset = UNSET
    """Replaces ``notes``."""
    turns: int | Unset = UNSET
    """Added to ``turns``."""


@attrs.frozen
class Chat(StateSchema[ChatUpdate]):
    """A state with two growing fields: messages (upserted by id) and notes (replaced)."""

    messages: tuple[Message, ...] = field(default=(), reducer=merge_by_key(message_id))
    """Grows by one message per turn; now and then an older message is rewritten in place."""
    notes: tuple[str, ...] = ()
    """Replaced by updates that set it, so it may grow or shrink."""
    turns: int = field(default=0, reducer=add)
    """How many turns ran."""


@Chat.node
def talk(state: Chat) -> ChatUpdate:
    """Append one message."""
    return ChatUpdate(messages=(Message(state.turns, f"message {state.turns}"),), turns=1)


@Chat.node
def edit(state: Chat) -> ChatUpdate:
    """Append one message; every 7th turn also rewrite an older one; grow or shrink the notes."""
    t = state.turns
    messages = [Message(t, f"message {t}")]
    if t % 7 == 6:
        messages.insert(0, Message(t - 3, f"rewritten at turn {t}"))
    notes: tuple[str, ...] | Unset = UNSET
    if t % 3 == 0:
        notes = (*state.notes, f"note {t}")
    if t % 10 == 9:
        notes = state.notes[1:]
    return ChatUpdate(messages=tuple(messages), notes=notes, turns=1)


@Chat.node
def fail_at_3(state: Chat) -> ChatUpdate:
    """Like talk, but fail at turn 3."""
    if state.turns == 3:
        raise RuntimeError("the model is down")
    return ChatUpdate(messages=(Message(state.turns, f"message {state.turns}"),), turns=1)


@Chat.node
def pause(state: Chat) -> None:
    """A place for a run to stop at (it is in ``interrupt_before``)."""


def chat_runner(
    cp: HistoryCheckpointer[Chat], node: Node[Chat], *, stop_at: int, pause_every: int = 0
) -> Runner[Chat]:
    """Run ``node`` once per step until ``stop_at`` turns, stopping at every ``pause_every``."""

    def route(state: Chat) -> str:
        if state.turns >= stop_at:
            return END
        if pause_every and state.turns % pause_every == 0:
            return "pause"
        return node.name

    return Runner(
        Chat,
        nodes=[node, pause],
        entry=node.name,
        edges={"pause": node.name},
        routes={node.name: route},
        interrupt_before=["pause"],
        checkpointer=cp,
        step_limit=10_000,
    )


def plain(state: Chat) -> dict[str, Any]:
    """A state as the SQL view shows it."""
    return {
        "messages": [{"id": m.id, "text": m.text} for m in state.messages],
        "notes": list(state.notes),
        "turns": state.turns,
    }


def view(cp: DuckDBCheckpointer[Chat], thread_id: str) -> dict[int, Any]:
    """The full state of every step of a thread, from the view ``<table>_states``."""
    rows = cp.connection.execute(
        f"SELECT step, state FROM {cp.table}_states WHERE thread_id = ? ORDER BY step",
        [thread_id],
    ).fetchall()
    return dict(rows)


def stored(cp: DuckDBCheckpointer[Chat], thread_id: str) -> dict[int, tuple[bool, int, int]]:
    """Per step of a thread, as stored: whether the row is a base row, and how many
    messages and notes the raw row holds."""
    rows = cp.connection.execute(
        f"SELECT step, base, len(state.messages), len(state.notes) FROM {cp.table}_checkpoints "
        "WHERE thread_id = ? ORDER BY step",
        [thread_id],
    ).fetchall()
    return {step: (base, m, n) for step, base, m, n in rows}


def extends(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """True when ``new`` is ``old`` with items added at the end."""
    return new[: len(old)] == old


def summary(c: Checkpoint[Chat]) -> tuple[object, ...]:
    """What two backends that ran the same operations agree on (not the clock's readings)."""
    return (
        c.thread_id,
        c.step,
        c.state,
        c.next,
        c.status,
        c.reason,
        c.parent,
        [(w.node, w.updates, w.goto) for w in c.writes],
        [(w.node, w.updates, w.goto) for w in c.pending],
    )


def assert_exact(cp: DuckDBCheckpointer[Chat], expected: list[Checkpoint[Chat]]) -> None:
    """Every step of a thread loads (alone, and in the history) and shows in the view exactly
    as ``expected`` (compared by :func:`summary`)."""
    thread_id = expected[0].thread_id
    cp.flush()  # SQL sees committed rows only (a batched checkpointer may hold some back)
    shown = view(cp, thread_id)
    assert sorted(shown) == [c.step for c in expected]
    history = list(reversed(cp.history(thread_id)))
    assert [summary(c) for c in history] == [summary(c) for c in expected]
    for c in expected:
        assert summary(cp.load_at(thread_id, c.step)) == summary(c)
        assert shown[c.step] == plain(c.state)


# ----- growing fields are stored as deltas ---------------------------------------------------


def test_a_long_run_stores_each_new_message_once() -> None:
    # Batched: one transaction for the whole run (this test is about what the rows hold).
    with DuckDBCheckpointer(Chat, durability="batch", batch_size=1000) as cp:
        runner = chat_runner(cp, talk, stop_at=300)
        produced = list(runner.stream(Chat(), thread_id="t1"))
        assert len(produced) == 301
        assert produced[-1].state.turns == 300
        # The view and every load give back exactly what was saved, at every step.
        shown = view(cp, "t1")
        assert sorted(shown) == list(range(301))
        for c in produced:
            assert cp.load_at("t1", c.step) == c
            assert shown[c.step] == plain(c.state)
        assert list(reversed(cp.history("t1"))) == produced
        # Raw rows: the full list only every snapshot_every (100) steps, else the new message.
        rows = stored(cp, "t1")
        full = {step for step, (base, _, _) in rows.items() if base}
        assert full == {0, 100, 200, 300}
        for step, (base, messages, _) in rows.items():
            assert messages == (step if base else 1), step
        total = cp.connection.execute(
            "SELECT sum(len(state.messages)) FROM chat_checkpoints"
        ).fetchone()
        assert total == (297 + 100 + 200 + 300,)


def test_snapshot_every_sets_how_often_a_full_row_is_stored() -> None:
    with DuckDBCheckpointer(Chat, snapshot_every=7) as cp:
        produced = list(chat_runner(cp, talk, stop_at=30).stream(Chat(), thread_id="t1"))
        rows = stored(cp, "t1")
        assert {s for s, (base, _, _) in rows.items() if base} == {0, 7, 14, 21, 28}
        assert all(rows[s][1] == s for s in (7, 14, 21, 28))
        assert_exact(cp, produced)


def test_a_rewritten_or_shrunk_field_is_stored_in_full() -> None:
    with DuckDBCheckpointer(Chat, snapshot_every=1000) as cp:
        produced = list(chat_runner(cp, edit, stop_at=40).stream(Chat(), thread_id="t1"))
        rows = stored(cp, "t1")
        rewritten = set()
        for before, after in itertools.pairwise(produced):
            if not (
                extends(before.state.messages, after.state.messages)
                and extends(before.state.notes, after.state.notes)
            ):
                rewritten.add(after.step)
        # The run rewrites messages in place (merge_by_key on an existing id) and shrinks notes.
        assert {7, 14, 21} <= rewritten
        assert {10, 20} <= rewritten
        assert {s for s, (base, _, _) in rows.items() if base} == {0} | rewritten
        for c in produced:
            base, messages, notes = rows[c.step]
            if base:
                assert (messages, notes) == (len(c.state.messages), len(c.state.notes))
            else:
                assert messages == 1  # only the message the step appended
        assert_exact(cp, produced)


def test_fork_prune_and_reopen_keep_reconstruction_exact(tmp_path: Path) -> None:
    path = tmp_path / "chat.duckdb"
    duck = DuckDBCheckpointer(Chat, path)
    ref = InMemoryCheckpointer(Chat)  # the reference backend runs the same operations

    def both(run: Callable[[Runner[Chat]], object]) -> None:
        for cp in (duck, ref):
            run(chat_runner(cp, edit, stop_at=40, pause_every=20))

    def check() -> None:
        for info in ref.threads():
            assert_exact(duck, list(reversed(ref.history(info.thread_id))))
        assert [t.thread_id for t in duck.threads()] == [t.thread_id for t in ref.threads()]

    both(lambda r: r.invoke(Chat(), thread_id="t1"))  # to turn 20, stops before "pause"
    assert duck.load("t1").status == "interrupted"
    both(
        lambda r: r.fork(
            "t1", 9, "f1", update=ChatUpdate(messages=(Message(1, "forked"),), notes=("f",))
        )
    )
    both(lambda r: r.resume("f1"))
    both(lambda r: r.fork("t1", 11, "f2"))  # a fork at a delta row, without update
    both(lambda r: r.resume("f2"))
    # The fork's first row holds its fields in full, then deltas again.
    assert not stored(duck, "t1")[11][0]
    assert stored(duck, "f2")[11] == (True, 11, len(ref.load_at("f2", 11).state.notes))
    assert not stored(duck, "f2")[12][0]

    # Prune so that the oldest kept step is a delta row: it becomes a full row.
    assert not stored(duck, "t1")[15][0]
    assert duck.prune("t1", keep=6) == ref.prune("t1", keep=6) == 15
    base, messages, _ = stored(duck, "t1")[15]
    assert (base, messages) == (True, len(ref.load_at("t1", 15).state.messages))
    with pytest.raises(StepNotFoundError):
        duck.load_at("t1", 14)
    check()

    # Reopen (every cache is cold) and continue the runs: still exact.
    duck.close()
    duck = DuckDBCheckpointer(Chat, path)
    check()
    both(lambda r: r.resume("t1"))
    both(lambda r: r.resume("f1"))
    assert duck.load("t1").state.turns == 40
    # The first row saved after reopening holds its fields in full (nothing cached to build on).
    assert stored(duck, "t1")[21] == (True, 20, len(ref.load_at("t1", 21).state.notes))
    assert not stored(duck, "t1")[23][0]
    check()
    duck.close()


Op = tuple[str, int]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3)),
        st.tuples(st.just("rewrite"), st.integers(0, 99)),
        st.tuples(st.just("note"), st.integers(0, 2)),
        st.tuples(st.just("drop"), st.integers(1, 2)),
        st.tuples(st.just("fork"), st.integers(0, 99)),
        st.tuples(st.just("prune"), st.integers(1, 6)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=15,
)


def next_update(state: Chat, op: Op) -> ChatUpdate:
    """The update an operation makes from a state."""
    kind, k = op
    n = len(state.messages)
    if kind == "append":
        return ChatUpdate(messages=tuple(Message(n + i, f"m{n + i}") for i in range(k)), turns=1)
    if kind == "rewrite" and n:
        return ChatUpdate(messages=(Message(k % n, f"rewritten {k}"),), turns=1)
    if kind == "note":
        return ChatUpdate(notes=(*state.notes, *(f"n{k}-{i}" for i in range(k))))
    return ChatUpdate(notes=state.notes[k:])


@pytest.fixture(scope="module")
def database() -> Iterator[duckdb.DuckDBPyConnection]:
    """One in-memory database for every example of a property test."""
    con = duckdb.connect()
    yield con
    con.close()


examples = itertools.count()


@settings(max_examples=max(10, settings().max_examples // 2))  # each example is slow
@given(
    snapshot_every=st.integers(1, 6),
    durability=st.sampled_from(["step", "batch"]),
    script=ops,
)
def test_deltas_match_the_reference_backend(
    database: duckdb.DuckDBPyConnection,
    snapshot_every: int,
    durability: Durability,
    script: list[Op],
) -> None:
    # Each example has a table of its own, and a fresh reference backend.
    table = f"example{next(examples)}"

    def open_duck() -> DuckDBCheckpointer[Chat]:
        return DuckDBCheckpointer(
            Chat, database, table=table, snapshot_every=snapshot_every, durability=durability
        )

    duck = open_duck()
    ref = InMemoryCheckpointer(Chat)
    thread = f"{table}-0"
    for cp in (duck, ref):
        cp.save(Checkpoint(thread_id=thread, step=0, state=Chat(), next=("n",)))
    forks = itertools.count(1)
    for op in script:
        kind, k = op
        latest = ref.load(thread)
        if kind == "fork":
            new = f"{table}-{next(forks)}"
            step = ref.history(thread)[k % len(ref.history(thread))].step
            for cp in (duck, ref):
                cp.fork(thread, step, new)
            thread = new
        elif kind == "prune":
            assert duck.prune(thread, keep=k) == ref.prune(thread, keep=k)
        elif kind == "reopen":
            duck.close()  # closes its own cursor only: the database lives on
            duck = open_duck()
        else:
            update = next_update(latest.state, op)
            saved = Checkpoint(
                thread_id=thread,
                step=latest.step + 1,
                state=latest.state.apply(update),
                next=("n",),
                writes=(NodeWrite(node="n", updates=(update,)),),
            )
            for cp in (duck, ref):
                cp.save(saved)
    for info in ref.threads():
        assert_exact(duck, list(reversed(ref.history(info.thread_id))))
    duck.close()


# ----- durability ----------------------------------------------------------------------------


def committed_steps(path: Path, table: str = "chat_checkpoints") -> list[tuple[str, int]]:
    """The committed (thread, step) rows of a file, read through a second connection (in the
    same process, DuckDB shares the open database, and shows only committed rows)."""
    con = duckdb.connect(str(path))
    try:
        rows = con.execute(f"SELECT thread_id, step FROM {table} ORDER BY ALL").fetchall()
        return [(str(t), int(s)) for t, s in rows]
    finally:
        con.close()


def chat_checkpoint(thread_id: str, step: int, turns: int | None = None) -> Checkpoint[Chat]:
    """A checkpoint of a chat holding messages 0 to ``step``, as if one turn ran per step."""
    update = ChatUpdate(messages=(Message(step, "x"),), turns=1)
    return Checkpoint(
        thread_id=thread_id,
        step=step,
        state=Chat(
            messages=tuple(Message(i, "x") for i in range(step + 1)),
            turns=step if turns is None else turns,
        ),
        next=("talk",),
        writes=(NodeWrite(node="talk", updates=(update,)),),
        created_at=T0 + timedelta(seconds=step),
    )


def test_batched_saves_are_loadable_before_a_flush_and_committed_by_it(tmp_path: Path) -> None:
    path = tmp_path / "batch.duckdb"
    with DuckDBCheckpointer(Chat, path, durability="batch", batch_size=100) as cp:
        saved = [chat_checkpoint("t1", s) for s in range(3)]
        for c in saved:
            cp.save(c)
        assert committed_steps(path) == []
        cp.flush()
        assert committed_steps(path) == [("t1", 0), ("t1", 1), ("t1", 2)]
        more = [chat_checkpoint("t1", s) for s in (3, 4)]
        for c in more:
            cp.save(c)
        assert cp.load("t1") == more[-1]
        assert list(reversed(cp.history("t1"))) == saved + more


def test_batched_saves_commit_every_batch_size_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "batch.duckdb"
    cp = DuckDBCheckpointer(Chat, path, durability="batch", batch_size=4)
    for s in range(6):
        cp.save(chat_checkpoint("t1", s))
    assert committed_steps(path) == [("t1", s) for s in range(4)]
    cp.close()
    assert committed_steps(path) == [("t1", s) for s in range(6)]
    with DuckDBCheckpointer(Chat, path) as reopened:
        assert reopened.load("t1") == chat_checkpoint("t1", 5)


def test_a_batched_run_is_durable_when_it_stops(tmp_path: Path) -> None:
    path = tmp_path / "batch.duckdb"
    cp = DuckDBCheckpointer(Chat, path, durability="batch", batch_size=1000)
    done = chat_runner(cp, talk, stop_at=20).invoke(Chat(), thread_id="done")
    assert isinstance(done, Completed)
    # No flush, no close: the runner committed when the run ended.
    assert committed_steps(path) == [("done", s) for s in range(21)]
    stopped = chat_runner(cp, talk, stop_at=20, pause_every=5).invoke(Chat(), thread_id="paused")
    assert isinstance(stopped, Interrupted)
    assert ("paused", 5) in committed_steps(path)
    with pytest.raises(NodeError):
        chat_runner(cp, fail_at_3, stop_at=20).invoke(Chat(), thread_id="failed")
    assert [s for t, s in committed_steps(path) if t == "failed"] == [0, 1, 2, 3, 4]
    assert cp.load("failed").status == "error"
    cp.close()


CRASH = """
import os, sys
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, make_checkpoint

cp = DuckDBCheckpointer(ContractState, sys.argv[1], durability="batch", batch_size=5)
for step in range(12):
    for thread in ("a", "b"):
        if (thread, step) != ("b", 11):
            cp.save(make_checkpoint(thread, step))
os._exit(0)  # a crash: no flush, no close
"""


def test_a_crash_loses_only_a_suffix_of_whole_steps(tmp_path: Path) -> None:
    path = tmp_path / "crash.duckdb"
    subprocess.run([sys.executable, "-c", CRASH, str(path)], check=True, timeout=120)
    with DuckDBCheckpointer(ContractState, path) as cp:
        steps = {t: [c.step for c in reversed(cp.history(t))] for t in ("a", "b")}
        kept = sum(len(s) for s in steps.values())
        assert 0 < 23 - kept < 5  # fewer than batch_size checkpoints are lost
        for thread, got in steps.items():
            assert got == list(range(len(got)))  # a prefix of the thread's steps
            for step in got:  # each of them whole: state, writes and their updates
                assert cp.load_at(thread, step) == make_checkpoint(thread, step)
        orphans = cp.connection.execute(
            "SELECT count(*) FROM contract_state_updates u WHERE NOT EXISTS (SELECT 1 FROM "
            "contract_state_checkpoints c WHERE c.thread_id = u.thread_id AND c.step = u.step)"
        ).fetchone()
        assert orphans == (0,)


# ----- group commit --------------------------------------------------------------------------


def record_commits(
    cp: DuckDBCheckpointer[Any], monkeypatch: pytest.MonkeyPatch, delay: float = 0.0
) -> list[int]:
    """Record how many checkpoints each transaction writes; ``delay`` makes commits slow."""
    sizes: list[int] = []
    write = cp._write

    def slow_write(accepted: list[Any], *, log: bool = False) -> None:
        sizes.append(len(accepted))
        time.sleep(delay)
        write(accepted, log=log)

    monkeypatch.setattr(cp, "_write", slow_write)
    return sizes


def run_threads(target: Callable[[int], None], count: int) -> list[CheckpointError]:
    """Run ``target(i)`` in ``count`` Python threads; return the checkpoint errors they raised
    (anything else reaches pytest as an unhandled exception in a thread, and fails the test)."""
    errors: list[CheckpointError] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except CheckpointError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_concurrent_saves_all_succeed_and_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DuckDBCheckpointer(Chat, tmp_path / "group.duckdb") as cp:
        sizes = record_commits(cp, monkeypatch, delay=0.002)
        start = threading.Barrier(8)

        def work(i: int) -> None:
            start.wait()
            for step in range(25):
                cp.save(chat_checkpoint(f"t{i}", step))

        assert run_threads(work, 8) == []
        for i in range(8):
            assert list(reversed(cp.history(f"t{i}"))) == [
                chat_checkpoint(f"t{i}", s) for s in range(25)
            ]
        assert sum(sizes) == 200
        assert max(sizes) > 1
        assert len(sizes) < 200


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.fixture
def queued(tmp_path: Path) -> Iterator[DuckDBCheckpointer[Chat]]:
    with DuckDBCheckpointer(Chat, tmp_path / "queue.duckdb") as cp:
        yield cp


def save_while_a_commit_runs(
    cp: DuckDBCheckpointer[Chat], checkpoints: list[Checkpoint[Chat]]
) -> list[CheckpointError]:
    """Save each checkpoint in its own thread while the checkpointer is busy (its lock is
    held, as during a commit), so that every save is queued before the next commit starts."""
    with cp._lock:
        errors: list[CheckpointError] = []
        runner = threading.Thread(
            target=lambda: errors.extend(
                run_threads(lambda i: cp.save(checkpoints[i]), len(checkpoints))
            )
        )
        runner.start()
        wait_until(lambda: cp._group.pending() == len(checkpoints))
    runner.join(timeout=60)
    return errors


def test_saves_queued_during_a_commit_share_one_transaction(
    queued: DuckDBCheckpointer[Chat], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_commits(queued, monkeypatch)
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(6)]
    assert save_while_a_commit_runs(queued, checkpoints) == []
    assert sizes == [6]
    for c in checkpoints:
        assert queued.load(c.thread_id) == c


def test_a_bad_value_fails_only_its_own_save_in_a_shared_transaction(
    queued: DuckDBCheckpointer[Chat], monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_commits(queued, monkeypatch)
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(5)]
    # A lone surrogate passes typedflow's checks, but DuckDB refuses the text it is in.
    bad = chat_checkpoint("bad", 0)
    bad = attrs.evolve(bad, state=attrs.evolve(bad.state, messages=(Message(0, "\ud800"),)))
    checkpoints.insert(2, bad)
    errors = save_while_a_commit_runs(queued, checkpoints)
    assert sizes[0] == 6  # they were written together, and DuckDB refused the transaction
    assert len(errors) == 1
    assert isinstance(errors[0], SerializationError)
    assert errors[0].path == "state.messages[0].text"
    assert "thread 'bad', step 0" in str(errors[0])
    for c in checkpoints:
        if c.thread_id != "bad":
            assert queued.load(c.thread_id) == c
    assert "bad" not in {t.thread_id for t in queued.threads()}


def test_asyncio_runs_share_one_checkpointer(tmp_path: Path) -> None:
    with DuckDBCheckpointer(Chat, tmp_path / "async.duckdb") as cp:
        runner = chat_runner(cp, talk, stop_at=15)

        async def main() -> list[Completed[Chat] | Interrupted[Chat]]:
            return await asyncio.gather(
                *(runner.ainvoke(Chat(), thread_id=f"t{i}") for i in range(10))
            )

        results = asyncio.run(main())
        assert [r.state.turns for r in results] == [15] * 10
        for i in range(10):
            assert [c.step for c in cp.history(f"t{i}")] == list(range(15, -1, -1))


# ----- a file in use by another process ------------------------------------------------------

OPEN_ELSEWHERE = """
import json, sys
from typedflow import StoreLockedError
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState

try:
    DuckDBCheckpointer(ContractState, sys.argv[1])
except StoreLockedError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                      "runtime": isinstance(exc, RuntimeError)}))
"""


def dump(con: duckdb.DuckDBPyConnection) -> dict[str, list[Any]]:
    """Every row of every table of a database, and the tables' layouts."""
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    out: dict[str, list[Any]] = {}
    for table in sorted(tables):
        # As text: Python clients before 2.0.1 need pytz to fetch TIMESTAMPTZ values.
        out[table] = con.execute(
            f'SELECT COLUMNS(*)::VARCHAR FROM "{table}" ORDER BY ALL'
        ).fetchall()
        out[f"{table} layout"] = con.execute(f'DESCRIBE "{table}"').fetchall()
    return out


def test_a_second_process_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    with DuckDBCheckpointer(ContractState, path) as cp:
        cp.save(make_checkpoint("t", 0))
        before = dump(cp.connection)
        done = subprocess.run(
            [sys.executable, "-c", OPEN_ELSEWHERE, str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        report = json.loads(done.stdout)
        assert report["error"] == StoreLockedError.__name__
        assert report["runtime"]
        message = report["message"]
        assert str(path) in message
        assert "in use by another process" in message
        assert "close it there, or use another file" in message
        assert "cannot open the file read-only" in message  # DuckDB's own hint does not apply
        assert dump(cp.connection) == before
        cp.save(make_checkpoint("t", 1))  # the owner goes on as before
        assert cp.load("t") == make_checkpoint("t", 1)


# ----- connections and shared files ----------------------------------------------------------


@attrs.frozen
class Tally(StateSchema[int]):
    """A second schema, to share a database file with :class:`Chat`."""

    total: int = 0
    """The sum of the updates."""

    def apply(self, update: int) -> Tally:
        return Tally(self.total + update)


def tally_checkpoint(thread_id: str, step: int) -> Checkpoint[Tally]:
    return Checkpoint(
        thread_id=thread_id,
        step=step,
        state=Tally(step),
        next=(),
        writes=(NodeWrite(node="add", updates=(1,)),) if step else (),
        created_at=T0 + timedelta(seconds=step),
    )


def test_an_existing_connection_is_used_and_left_open(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "app.duckdb"))
    con.execute("CREATE TABLE app_users (name VARCHAR)")
    con.execute("INSERT INTO app_users VALUES ('ada')")
    cp = DuckDBCheckpointer(Chat, con)
    chat_runner(cp, talk, stop_at=3).invoke(Chat(), thread_id="t1")
    cp.close()
    with pytest.raises(CheckpointError, match="closed"):
        cp.save(chat_checkpoint("t2", 0))
    # The connection is still open, and sees the checkpoints next to the application's tables.
    assert con.execute("SELECT count(*) FROM chat_checkpoints").fetchone() == (4,)
    assert con.execute("SELECT name FROM app_users").fetchall() == [("ada",)]
    again = DuckDBCheckpointer(Chat, con)
    assert again.load("t1").state.turns == 3
    again.close()
    con.close()


def test_two_schemas_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    chats = DuckDBCheckpointer(Chat, path)
    tallies = DuckDBCheckpointer(Tally, path)  # a second connection in this process
    custom = DuckDBCheckpointer(Chat, path, table="support_chat")
    chats.save(chat_checkpoint("c1", 0))
    for step in range(3):
        tallies.save(tally_checkpoint("n1", step))
    custom.save(chat_checkpoint("s1", 0))
    # A thread id is unique in the database: another schema cannot take it.
    with pytest.raises(CheckpointError, match="already used by schema"):
        tallies.save(tally_checkpoint("c1", 0))
    assert [t.thread_id for t in chats.threads()] == ["c1"]
    assert [t.thread_id for t in tallies.threads()] == ["n1"]
    assert [t.thread_id for t in custom.threads()] == ["s1"]
    for cp in (chats, tallies, custom):
        cp.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert {
            "typedflow_threads",
            "chat_checkpoints",
            "chat_updates",
            "tally_checkpoints",
            "tally_updates",
            "support_chat_checkpoints",
            "support_chat_updates",
        } <= tables
        threads = con.execute(
            "SELECT thread_id, schema_name, table_name FROM typedflow_threads ORDER BY thread_id"
        ).fetchall()
        assert threads == [
            ("c1", "Chat", "chat"),
            ("n1", "Tally", "tally"),
            ("s1", "Chat", "support_chat"),
        ]
        assert con.execute(
            "SELECT count(*) FROM tally_checkpoints WHERE thread_id = 'c1'"
        ).fetchone() == (0,)
    finally:
        con.close()
    with DuckDBCheckpointer(Tally, path) as reopened:
        assert reopened.load("n1") == tally_checkpoint("n1", 2)


def test_importing_typedflow_does_not_import_duckdb() -> None:
    code = (
        "import sys, typedflow\n"
        "print('duckdb' in sys.modules, 'typedflow.checkpoint.duckdb' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["False", "False"]


# ----- the commit log ------------------------------------------------------------------------


def test_default_durability_commits_to_the_log_and_moves_rows_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    with DuckDBCheckpointer(Chat, path, batch_size=4) as cp:
        con = cp.connection
        counts = "SELECT (SELECT count(*) FROM chat_log), (SELECT count(*) FROM chat_checkpoints)"
        cp.save(chat_checkpoint("t1", 0))
        cp.save(chat_checkpoint("t1", 1))
        assert con.execute(counts).fetchone() == (2, 0)  # committed, in the narrow log
        cp.flush()
        assert con.execute(counts).fetchone() == (0, 2)
        for step in range(2, 7):
            cp.save(chat_checkpoint("t1", step))
        # Every batch_size checkpoints move on their own, in the background (step 6 is moved
        # too if it was committed before the move began).
        wait_until(lambda: con.execute(counts).fetchone() in ((1, 6), (0, 7)))
        assert cp.load("t1") == chat_checkpoint("t1", 6)  # a read moves them first
        assert con.execute(counts).fetchone() == (0, 7)


def test_checkpoints_in_the_log_of_a_process_that_died_are_recovered_at_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "died.duckdb"
    cp = DuckDBCheckpointer(Chat, path)
    saved = [chat_checkpoint("t1", s) for s in range(5)]
    for c in saved:
        cp.save(c)
    cp._con.close()  # as if the process died: nothing flushed or closed
    cp._closed = True
    con = duckdb.connect(str(path), read_only=True)
    try:
        # Committed: in the log, which an analyst can read as JSON; not in the typed tables yet.
        assert con.execute("SELECT count(*) FROM chat_log").fetchone() == (5,)
        assert con.execute("SELECT count(*) FROM chat_checkpoints").fetchone() == (0,)
        assert con.execute(
            "SELECT payload::JSON -> '$.checkpoint.state.turns' FROM chat_log WHERE step = 4"
        ).fetchone() == ("4",)
    finally:
        con.close()
    with DuckDBCheckpointer(Chat, path) as reopened:
        assert list(reversed(reopened.history("t1"))) == saved
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute(
            "SELECT (SELECT count(*) FROM chat_log), (SELECT count(*) FROM chat_checkpoints)"
        ).fetchone() == (0, 5)
    finally:
        con.close()


def save_together(cp: DuckDBCheckpointer[Chat], save: Callable[[int], None], count: int) -> None:
    """Run ``save(i)`` in ``count`` threads, all queued before one group commit starts."""
    with cp._lock:
        workers = [threading.Thread(target=save, args=(i,)) for i in range(count)]
        for w in workers:
            w.start()
        wait_until(lambda: cp._group.pending() == count)
    for w in workers:
        w.join(timeout=60)


def test_an_unexpected_failure_in_a_group_commit_reaches_every_caller_it_concerns(
    queued: DuckDBCheckpointer[Chat], monkeypatch: pytest.MonkeyPatch
) -> None:
    accept = queued._accept

    def flaky_accept(ticket: Any) -> None:
        if ticket.checkpoint.thread_id == "odd":
            raise RuntimeError("something unexpected")
        accept(ticket)

    monkeypatch.setattr(queued, "_accept", flaky_accept)
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(3)] + [chat_checkpoint("odd", 0)]
    outcomes: dict[str, BaseException | None] = {}

    def save(i: int) -> None:
        try:
            queued.save(checkpoints[i])
        except RuntimeError as exc:
            outcomes[checkpoints[i].thread_id] = exc
        else:
            outcomes[checkpoints[i].thread_id] = None

    save_together(queued, save, len(checkpoints))
    assert isinstance(outcomes.pop("odd"), RuntimeError)
    assert outcomes == {"t0": None, "t1": None, "t2": None}
    # A failure of the write itself fails every save of the batch: none returns as saved.
    monkeypatch.setattr(queued, "_accept", accept)

    def broken_write(accepted: list[Any], *, log: bool = False) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(queued, "_write", broken_write)
    outcomes.clear()
    checkpoints = [chat_checkpoint(f"t{i}", 1) for i in range(3)]
    save_together(queued, save, len(checkpoints))
    assert set(outcomes) == {"t0", "t1", "t2"}
    assert all(isinstance(e, RuntimeError) for e in outcomes.values())


# ----- group commit: asyncio callers, flush and close while commits run -----------------------


def asave_while_a_commit_runs(
    cp: DuckDBCheckpointer[Chat], checkpoints: list[Checkpoint[Chat]], *, cancel: int = -1
) -> list[BaseException | None]:
    """``asave`` each checkpoint in a task of one event loop while the checkpointer's lock is
    held; cancel task ``cancel`` while it waits. The outcome of each task."""
    outcomes: list[BaseException | None] = []

    async def main() -> None:
        tasks = [asyncio.ensure_future(cp.asave(c)) for c in checkpoints]
        await asyncio.to_thread(wait_until, lambda: cp._group.pending() == len(checkpoints))
        if cancel >= 0:
            tasks[cancel].cancel()
        release.set()
        for task in tasks:
            try:
                await task
            except BaseException as exc:  # noqa: BLE001  # the outcome is what is tested
                outcomes.append(exc)
            else:
                outcomes.append(None)

    release = threading.Event()
    with cp._lock:
        loop = threading.Thread(target=lambda: asyncio.run(main()))
        loop.start()
        assert release.wait(30)
    loop.join(timeout=60)
    return outcomes


def test_asyncio_saves_queued_during_a_commit_share_one_transaction_off_the_loop(
    queued: DuckDBCheckpointer[Chat], monkeypatch: pytest.MonkeyPatch
) -> None:
    committers: list[str] = []
    write = queued._write

    def recording_write(accepted: list[Any], *, log: bool = False) -> None:
        committers.append(threading.current_thread().name)
        write(accepted, log=log)

    monkeypatch.setattr(queued, "_write", recording_write)
    sizes = record_commits(queued, monkeypatch)
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(6)]
    assert asave_while_a_commit_runs(queued, checkpoints) == [None] * 6
    assert sizes == [6]
    assert committers == ["typedflow chat commits"]  # the group's writer, not the event loop
    for c in checkpoints:
        assert queued.load(c.thread_id) == c


def test_a_cancelled_asave_leaves_the_others_alone(queued: DuckDBCheckpointer[Chat]) -> None:
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(4)]
    outcomes = asave_while_a_commit_runs(queued, checkpoints, cancel=1)
    assert [type(o) for o in outcomes] == [
        type(None),
        asyncio.CancelledError,
        type(None),
        type(None),
    ]
    # A save already queued is committed even if its caller stopped waiting for it.
    for c in checkpoints:
        assert queued.load(c.thread_id) == c


def test_flush_while_others_commit_moves_the_log_once_they_pause(
    queued: DuckDBCheckpointer[Chat],
) -> None:
    con = queued.connection
    counts = "SELECT (SELECT count(*) FROM chat_log), (SELECT count(*) FROM chat_checkpoints)"
    queued.save(chat_checkpoint("t1", 0))
    queued.save(chat_checkpoint("t1", 1))
    with queued._lock:
        saver = threading.Thread(target=lambda: queued.save(chat_checkpoint("t1", 2)))
        saver.start()
        wait_until(lambda: queued._group.pending() == 1)
        flusher = threading.Thread(target=queued.flush)
        flusher.start()
        flusher.join(timeout=30)
        # flush did not wait for the lock a commit holds: it left the move for the committer.
        assert not flusher.is_alive()
    saver.join(timeout=30)
    wait_until(lambda: con.execute(counts).fetchone() == (0, 3))


def test_close_commits_the_saves_queued_before_it(tmp_path: Path) -> None:
    path = tmp_path / "close.duckdb"
    cp = DuckDBCheckpointer(Chat, path)
    checkpoints = [chat_checkpoint(f"t{i}", 0) for i in range(3)]
    with cp._lock:
        savers = [threading.Thread(target=cp.save, args=(c,)) for c in checkpoints]
        for s in savers:
            s.start()
        wait_until(lambda: cp._group.pending() == len(checkpoints))
        closer = threading.Thread(target=cp.close)
        closer.start()
    closer.join(timeout=60)
    for s in savers:
        s.join(timeout=60)
    with DuckDBCheckpointer(Chat, path) as reopened:
        for c in checkpoints:
            assert reopened.load(c.thread_id) == c


@pytest.mark.parametrize("durability", ["step", "batch"])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_every_save_after_close_is_refused_as_closed(
    durability: Literal["step", "batch"], batch_size: int, tmp_path: Path
) -> None:
    # Whatever way a save would take (buffered on the event loop, handed to a worker thread
    # to commit a full buffer or to look a new thread up), a closed checkpointer refuses it.
    cp = DuckDBCheckpointer(
        Chat, tmp_path / "c.duckdb", durability=durability, batch_size=batch_size
    )
    asyncio.run(cp.asave(chat_checkpoint("known", 0)))
    cp.close()
    for thread_id in ("known", "new"):
        step = 1 if thread_id == "known" else 0
        with pytest.raises(CheckpointError, match="closed"):
            cp.save(chat_checkpoint(thread_id, step))
        with pytest.raises(CheckpointError, match="closed"):
            asyncio.run(cp.asave(chat_checkpoint(thread_id, step)))
    assert not [t for t in threading.enumerate() if t.name.startswith("typedflow chat")]


def test_a_thread_of_another_schema_is_named_when_looked_up(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    with (
        DuckDBCheckpointer(Chat, path) as chats,
        DuckDBCheckpointer(Tally, path) as tallies,
        DuckDBCheckpointer(Chat, path, table="support_chat") as support,
    ):
        chats.save(chat_checkpoint("c1", 0))
        expected = "thread 'c1': it is stored by schema 'Chat', table 'chat' (thread ids"
        calls: list[Callable[[], object]] = [
            lambda: tallies.load("c1"),
            lambda: tallies.load_at("c1", 0),
            lambda: tallies.history("c1"),
            lambda: tallies.delete("c1"),
            lambda: tallies.prune("c1", keep=1),
            lambda: support.load("c1"),
        ]
        for call in calls:
            with pytest.raises(ThreadNotFoundError) as info:
                call()
            assert info.value.stored_by == "schema 'Chat', table 'chat'"
            assert expected in str(info.value)
        with pytest.raises(ThreadNotFoundError) as info:
            tallies.load("nobody")
        assert info.value.stored_by is None
        assert "no checkpoint is stored for thread 'nobody'" in str(info.value)
        assert chats.load("c1").step == 0  # nothing changed
