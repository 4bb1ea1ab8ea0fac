"""DuckDB backend, default durability (``"step"``): how a save reaches the log table.

Each save is one row of ``<table>_log``, written through an appender the checkpointer keeps
open, and committed before ``save`` returns; the log has no key, so a step already stored is
refused by the checkpointer's own checks, which the checkpointers of one table in one process
share. Files made with the earlier keyed log still open and work.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from typedflow import CheckpointError, ConflictError
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, make_checkpoint

LOG = "contract_state_log"


def log_rows(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    return con.execute(f"SELECT thread_id, step FROM {LOG} ORDER BY ALL").fetchall()


def stored_steps(con: duckdb.DuckDBPyConnection, thread: str = "t") -> list[int]:
    rows = con.execute(
        "SELECT step FROM contract_state_checkpoints WHERE thread_id = ? ORDER BY step",
        [thread],
    ).fetchall()
    return [step for (step,) in rows]


def log_has_key(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [LOG],
    ).fetchone()
    return row is not None and row[0] > 0


# ----- durable when save returns ---------------------------------------------------------------

KILLED_AFTER_SAVES = """
import os, signal, sys
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, make_checkpoint

cp = DuckDBCheckpointer(ContractState, sys.argv[1], batch_size=1000)
for step in range(7):
    cp.save(make_checkpoint("t", step))
os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close, no exit handlers
"""


def test_each_save_is_committed_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "killed.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SAVES, str(path)], check=False, timeout=120
    )
    assert done.returncode == -9
    # The process died with every save in the log: the next open moves them.
    with DuckDBCheckpointer(ContractState, path) as cp:
        assert [c.step for c in reversed(cp.history("t"))] == list(range(7))
        for step in range(7):
            assert cp.load_at("t", step) == make_checkpoint("t", step)
        assert log_rows(cp.connection) == []


def test_a_saved_step_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    path = tmp_path / "seen.duckdb"
    with DuckDBCheckpointer(ContractState, path, batch_size=1000) as cp:
        other = duckdb.connect(str(path))  # in this process: the same database, its own cursor
        try:
            for step in range(3):
                cp.save(make_checkpoint("t", step))
                assert log_rows(other) == [("t", s) for s in range(step + 1)]
        finally:
            other.close()


# ----- a failed write leaves nothing behind ------------------------------------------------------


class FailingFlush:
    """Wraps the log's appender: rows are buffered in it, its next ``flush`` fails."""

    def __init__(self, appender: duckdb.Appender) -> None:
        self.appender = appender
        self.failed = False

    def append_row(self, *values: Any) -> None:
        self.appender.append_row(*values)

    def flush(self) -> None:
        if not self.failed:
            self.failed = True
            raise duckdb.IOException("IO Error: could not write the file (disk full)")
        self.appender.flush()

    def clear(self) -> None:
        self.appender.clear()


@pytest.mark.parametrize("new_thread", [False, True])
def test_a_failed_flush_drops_its_rows_and_the_next_save_starts_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_thread: bool
) -> None:
    path = tmp_path / "fails.duckdb"
    with DuckDBCheckpointer(ContractState, path, batch_size=1000) as cp:
        if not new_thread:
            cp.save(make_checkpoint("t", 0))
        first = 1 - new_thread
        make = cp._log_appender
        made: list[Any] = []

        def failing() -> tuple[duckdb.DuckDBPyConnection, Any]:
            con, appender = make()
            if not made:
                made.append(FailingFlush(appender))
            return con, made[0] if made[0].appender is appender else appender

        monkeypatch.setattr(cp, "_log_appender", failing)
        with pytest.raises(CheckpointError, match="disk full"):
            cp.save(make_checkpoint("t", first))
        # The row the failed flush held is gone; so is the appender that held it.
        assert cp._appender is None
        assert log_rows(cp.connection) == [("t", s) for s in range(first)]
        if new_thread:
            rows = cp.connection.execute("SELECT count(*) FROM typedflow_threads").fetchall()
            assert rows == [(0,)]
        # The same step saved again is stored once, and the thread goes on.
        for step in range(first, 4):
            cp.save(make_checkpoint("t", step))
        assert log_rows(cp.connection) == [("t", s) for s in range(4)]
        assert [c.step for c in reversed(cp.history("t"))] == list(range(4))
        for step in range(4):
            assert cp.load_at("t", step) == make_checkpoint("t", step)


# ----- duplicate steps --------------------------------------------------------------------------


def test_a_stored_step_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with DuckDBCheckpointer(ContractState, tmp_path / "dup.duckdb", batch_size=1000) as cp:
        assert not log_has_key(cp.connection)
        for step in range(3):
            cp.save(make_checkpoint("t", step))
        with pytest.raises(ConflictError) as info:
            cp.save(make_checkpoint("t", 2, n=99))
        assert (info.value.thread_id, info.value.step) == ("t", 2)
        assert log_rows(cp.connection) == [("t", 0), ("t", 1), ("t", 2)]
        cp.flush()  # moved: the check now stands on the typed tables
        with pytest.raises(ConflictError):
            cp.save(make_checkpoint("t", 1, n=99))
        assert stored_steps(cp.connection) == [0, 1, 2]
        assert cp.load("t") == make_checkpoint("t", 2)


def open_twice(
    tmp_path: Path, how: str
) -> tuple[DuckDBCheckpointer[ContractState], DuckDBCheckpointer[ContractState]]:
    if how == "file":
        path = tmp_path / "twice.duckdb"
        return DuckDBCheckpointer(ContractState, path), DuckDBCheckpointer(ContractState, path)
    if how == "file by two paths":
        (tmp_path / "sub").mkdir()
        path = tmp_path / "twice.duckdb"
        other = tmp_path / "sub" / ".." / "twice.duckdb"
        return DuckDBCheckpointer(ContractState, path), DuckDBCheckpointer(ContractState, other)
    a = DuckDBCheckpointer(ContractState)  # in memory, reached through a's connection
    return a, DuckDBCheckpointer(ContractState, a.connection)


@pytest.mark.parametrize("how", ["file", "file by two paths", "memory"])
def test_two_checkpointers_of_one_table_refuse_each_others_steps(tmp_path: Path, how: str) -> None:
    a, b = open_twice(tmp_path, how)
    try:
        b.save(make_checkpoint("t", 0))
        b.save(make_checkpoint("t", 1))
        a.save(make_checkpoint("t", 2))
        a.save(make_checkpoint("t", 3))
        # b last wrote step 1: its step 2 would fork the thread.
        with pytest.raises(ConflictError) as info:
            b.save(make_checkpoint("t", 2, n=99))
        assert (info.value.thread_id, info.value.step) == ("t", 2)
        b.save(make_checkpoint("t", 4))
        for cp in (a, b):
            history = list(reversed(cp.history("t")))
            assert history == [make_checkpoint("t", s) for s in range(5)]
    finally:
        a.close()
        b.close()


def test_two_checkpointers_racing_on_one_thread_never_fork_it(tmp_path: Path) -> None:
    path = tmp_path / "race.duckdb"
    a, b = DuckDBCheckpointer(ContractState, path), DuckDBCheckpointer(ContractState, path)
    won: list[tuple[str, int]] = []
    lost: list[tuple[str, int]] = []
    lock = threading.Lock()

    def race(name: str, cp: DuckDBCheckpointer[ContractState]) -> None:
        for step in range(40):
            try:
                cp.save(make_checkpoint("t", step))
            except ConflictError:
                with lock:
                    lost.append((name, step))
            else:
                with lock:
                    won.append((name, step))

    try:
        racers = [threading.Thread(target=race, args=(n, c)) for n, c in (("a", a), ("b", b))]
        for r in racers:
            r.start()
        for r in racers:
            r.join()
        assert sorted(step for _, step in won) == list(range(40))  # each step once
        assert len(lost) == 40
        assert [c.step for c in reversed(a.history("t"))] == list(range(40))
    finally:
        a.close()
        b.close()


# ----- files made with the keyed log -------------------------------------------------------------

KEYED_LOG_CRASH = f"""
import os, sys
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, make_checkpoint

cp = DuckDBCheckpointer(ContractState, sys.argv[1], batch_size=1000)
# The log as earlier versions made it: keyed by (thread_id, step).
cp.connection.execute("DROP TABLE {LOG}")
cp.connection.execute(
    "CREATE TABLE {LOG} (thread_id VARCHAR NOT NULL, step BIGINT NOT NULL, "
    "payload VARCHAR NOT NULL, PRIMARY KEY (thread_id, step))"
)
for step in range(4):
    cp.save(make_checkpoint("t", step))
os._exit(0)  # a crash: the rows stay in the log
"""


def test_a_file_with_the_keyed_log_opens_and_works(tmp_path: Path) -> None:
    path = tmp_path / "keyed.duckdb"
    subprocess.run([sys.executable, "-c", KEYED_LOG_CRASH, str(path)], check=True, timeout=120)
    with DuckDBCheckpointer(ContractState, path, batch_size=1000) as cp:
        assert log_has_key(cp.connection)  # kept as it was
        assert log_rows(cp.connection) == []  # moved at open
        assert stored_steps(cp.connection) == [0, 1, 2, 3]
        for step in range(4, 8):
            cp.save(make_checkpoint("t", step))
        with pytest.raises(ConflictError):
            cp.save(make_checkpoint("t", 7, n=99))
        assert log_rows(cp.connection) == [("t", s) for s in range(4, 8)]
    with DuckDBCheckpointer(ContractState, path) as cp:
        assert list(reversed(cp.history("t"))) == [make_checkpoint("t", s) for s in range(8)]


# ----- the background move -----------------------------------------------------------------------


def test_the_mover_waits_for_a_full_batch_after_a_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves committed during a background move do not wake the mover again for their few
    rows: the next background move waits for ``batch_size`` of them."""
    batch = 20
    cp = DuckDBCheckpointer(ContractState, tmp_path / "mover.duckdb", batch_size=batch)
    moves: list[int] = []
    moving = threading.Event()
    move = cp._move_log

    def slow_move(log_type: str, con: duckdb.DuckDBPyConnection | None = None) -> int:
        moved = move(log_type, con)
        if con is not None and con is not cp.connection:  # the mover's own cursor
            moves.append(moved)
            moving.set()
            time.sleep(0.3)  # saves go on meanwhile
        return moved

    monkeypatch.setattr(cp, "_move_log", slow_move)
    try:
        for step in range(batch):
            cp.save(make_checkpoint("t", step))
        assert moving.wait(10)
        for step in range(batch, batch + 5):  # committed while the move runs
            cp.save(make_checkpoint("t", step))
        time.sleep(0.6)  # the old mover moved those 5 after a pause of 50 ms
        assert moves == [batch]
        assert log_rows(cp.connection) == [("t", s) for s in range(batch, batch + 5)]
    finally:
        cp.close()
    with DuckDBCheckpointer(ContractState, tmp_path / "mover.duckdb") as cp:
        assert [c.step for c in reversed(cp.history("t"))] == list(range(batch + 5))


# ----- files made before failures had durations ---------------------------------------------------

OLD_FAILURES_CRASH = """
import os, sys
import typedflow.checkpoint.duckdb as module
from typedflow import NodeFailure
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, make_checkpoint

# The layout as earlier versions made it: failures without a duration, and no word of them in
# the stored layout.
module._FAILURE = "STRUCT(node VARCHAR, error_type VARCHAR, message VARCHAR)"
layout = DuckDBCheckpointer._layout
DuckDBCheckpointer._layout = lambda self: {
    k: v for k, v in layout(self).items() if k != "failures"
}
module._failure_row = lambda f: {"node": f.node, "error_type": f.error_type, "message": f.message}
old = NodeFailure(node="a", error_type="builtins.ValueError", message="old")
cp = DuckDBCheckpointer(ContractState, sys.argv[1], batch_size=1000)
cp.save(make_checkpoint("t", 0))
cp.save(make_checkpoint("t", 1, status="error", failures=(old,)))
cp.flush()  # moved into the typed tables
cp.save(make_checkpoint("u", 0, status="error", failures=(old,)))
os._exit(0)  # a crash: that row stays in the log, written as the old layout
"""


def test_a_file_made_before_failures_had_durations_opens_and_works(tmp_path: Path) -> None:
    from typedflow import NodeFailure

    path = tmp_path / "old-failures.duckdb"
    subprocess.run([sys.executable, "-c", OLD_FAILURES_CRASH, str(path)], check=True, timeout=120)
    old = NodeFailure(node="a", error_type="builtins.ValueError", message="old")
    new = NodeFailure(node="b", error_type="builtins.KeyError", message="new", duration=0.25)
    with DuckDBCheckpointer(ContractState, path, batch_size=1000) as cp:
        assert log_rows(cp.connection) == []  # moved at open, as written
        # The old rows load, their failures without a duration (None).
        assert cp.load_at("t", 1) == make_checkpoint("t", 1, status="error", failures=(old,))
        assert cp.load("u") == make_checkpoint("u", 0, status="error", failures=(old,))
        cp.save(make_checkpoint("t", 2, status="error", failures=(new,)))
    with DuckDBCheckpointer(ContractState, path) as cp:
        assert cp.load("t").failures == (new,)
        rows = cp.connection.execute(
            "SELECT thread_id, step, f.node, f.duration FROM contract_state_checkpoints, "
            "unnest(failures) AS u(f) ORDER BY ALL"
        ).fetchall()
        assert rows == [("t", 1, "a", None), ("t", 2, "b", 0.25), ("u", 0, "a", None)]
        expected = [
            make_checkpoint("t", 0),
            make_checkpoint("t", 1, status="error", failures=(old,)),
        ]
        assert list(reversed(cp.history("t")))[:2] == expected


def test_a_file_made_without_the_thread_indexes_gains_them_at_open(tmp_path: Path) -> None:
    path = tmp_path / "no-indexes.duckdb"
    expected = [make_checkpoint("t", step) for step in range(5)]
    with DuckDBCheckpointer(ContractState, path) as cp:
        for c in expected:
            cp.save(c)
    with duckdb.connect(str(path)) as con:  # as a version without them left the file
        con.execute("DROP INDEX contract_state_checkpoints_by_thread")
        con.execute("DROP INDEX contract_state_updates_by_thread")
    with DuckDBCheckpointer(ContractState, path) as cp:
        indexes = cp.connection.execute(
            "SELECT table_name, sql FROM duckdb_indexes() ORDER BY ALL"
        ).fetchall()
        assert [(table, "(thread_id)" in sql) for table, sql in indexes] == [
            ("contract_state_checkpoints", True),
            ("contract_state_updates", True),
        ]
        assert list(reversed(cp.history("t"))) == expected
        assert cp.load("t") == expected[-1]


def test_reads_know_about_how_many_checkpoints_the_table_holds(tmp_path: Path) -> None:
    """The estimate that decides whether reads look up ranges of row ids (a big table)."""
    path = tmp_path / "count.duckdb"
    with DuckDBCheckpointer(ContractState, path) as cp:
        assert cp._shared.rows == 0
        for step in range(3):
            cp.save(make_checkpoint("t", step))
        cp.load("t")  # moves the log into the typed tables
        assert cp._shared.rows == 3
    with DuckDBCheckpointer(ContractState, path, durability="batch") as cp:
        assert cp._shared.rows == 3  # counted at open
        for step in range(3, 5):
            cp.save(make_checkpoint("t", step))
        cp.flush()
        assert cp._shared.rows == 5
