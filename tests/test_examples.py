"""The examples run, print what they promise, and leave the history they describe."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from examples import agent, demo, quickstart
from typedflow import RESUME_WRITER, Completed, InMemoryCheckpointer, Interrupted
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_result_and_history(capsys: pytest.CaptureFixture[str]) -> None:
    quickstart.main()
    out = capsys.readouterr().out
    assert "final n = 22 after 7 steps" in out
    assert "step 7: ran report" in out
    assert "log: 1 + 1 | 2 + 2 | 4 + 4 | 8 + 8 | 16 + 3 | 19 + 3 | done at 22" in out


def test_agent_main_interrupts_and_answers(capsys: pytest.CaptureFixture[str]) -> None:
    agent.main()
    out = capsys.readouterr().out
    assert "interrupted at step 3: review: approve this answer?" in out
    assert "answer after 6 steps: About 'Can we have lunch outside in Lisbon on Friday?'" in out
    assert "sunny, 21°C" in out


def test_agent_history_tells_the_story() -> None:
    checkpointer = InMemoryCheckpointer(agent.AgentState)
    runner = agent.build_runner(checkpointer)
    first = runner.invoke(agent.AgentState(question="Lunch in Lisbon on Friday?"), thread_id="t")
    assert isinstance(first, Interrupted)
    assert first.checkpoint.status == "interrupted"
    assert first.checkpoint.next == ("review",)
    done = runner.resume("t", update=agent.AgentUpdate(approved=True))
    assert isinstance(done, Completed)
    history = list(reversed(checkpointer.history("t")))
    tools = [cp for cp in history if {w.node for w in cp.writes} == {"weather", "calendar"}]
    assert len(tools) == 1, "both tools ran in one step"
    resumed = [cp for cp in history if [w.node for w in cp.writes] == [RESUME_WRITER]]
    assert len(resumed) == 1
    assert resumed[0].writes[0].updates == (agent.AgentUpdate(approved=True),)
    assert done.state.answer.startswith("About 'Lunch in Lisbon on Friday?'")
    assert [m.role for m in done.state.messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


def test_agent_declined() -> None:
    state = agent.run_thread(agent.build_runner(), "t", "Walk in Oslo?", approve=False)
    assert state.answer == "The answer was not approved."
    assert state.approved is False


def test_demo_writes_a_file_that_sql_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "runs.duckdb"
    demo.main([str(path)])
    out = capsys.readouterr().out
    for title in demo.QUERIES:
        assert f"-- {title}" in out
    assert "dinner-rome | 3 | interrupted" in out
    assert "lunch-lisbon-declined | 5 | ok | lunch-lisbon | 3" in out
    con = duckdb.connect(str(path), read_only=True)
    try:
        threads = con.execute("SELECT count(*) FROM typedflow_threads").fetchone()
    finally:
        con.close()
    assert threads == (5,)


def test_demo_replaces_a_file_it_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo.main(["runs.duckdb"])  # a relative path is taken from the working directory
    demo.main([str(tmp_path / "runs.duckdb")])
    out = capsys.readouterr().out
    assert f"The history is in {tmp_path / 'runs.duckdb'};" in out
    assert "installed separately" in out
    con = duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True)
    try:
        threads = con.execute("SELECT count(*) FROM typedflow_threads").fetchone()
    finally:
        con.close()
    assert threads == (5,)


def _user_database(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE TABLE notes (text VARCHAR)")
        con.execute("INSERT INTO notes VALUES ('keep me')")
    finally:
        con.close()


def _other_threads(path: Path) -> None:
    # The demo's tables, but a thread the demo does not write: someone's own agent runs.
    with DuckDBCheckpointer(agent.AgentState, path) as checkpointer:
        agent.run_thread(agent.build_runner(checkpointer), "mine", "Lunch?", approve=True)


def _text_file(path: Path) -> None:
    path.write_text("not a database\n", encoding="utf-8")


def _stray_wal(path: Path) -> None:
    path.with_name(path.name + ".wal").write_bytes(b"a write-ahead log without its file")


@pytest.mark.parametrize("make", [_user_database, _other_threads, _text_file, _stray_wal])
def test_demo_refuses_a_file_it_did_not_write(
    make: Callable[[Path], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.duckdb"
    make(path)
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(SystemExit) as raised:
        demo.main([str(path)])
    assert raised.value.code not in (0, None)
    assert "give it a new path" in str(raised.value.code)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert capsys.readouterr().out == ""


def test_demo_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="is not a file"):
        demo.main([str(tmp_path)])
    assert tmp_path.is_dir()


@pytest.mark.parametrize("module", ["examples.quickstart", "examples.agent", "examples.demo"])
def test_example_runs_as_a_script(module: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", module]
    if module == "examples.demo":
        args.append(str(tmp_path / "runs.duckdb"))
    result = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout
