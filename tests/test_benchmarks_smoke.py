"""The benchmarks run: ``python -m benchmarks --quick`` prints every figure and writes them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import Figure, Target, table

ROOT = Path(__file__).resolve().parent.parent

TYPEDFLOW_KEYS = (
    "steps.none.20",
    "steps.none.100",
    "steps.memory.100",
    "steps.duckdb.20",
    "steps.duckdb.100",
    "steps.duckdb_batch.100",
    "growth.none",
    "growth.memory",
    "growth.duckdb",
    "growth.duckdb_batch",
    "duckdb.insert_commit",
    "ratio.duckdb_step_vs_insert",
    "concurrent.threads",
    "concurrent.tasks",
    "batch.small_state",
    "resume.interrupted",
    "resume.ended",
    "load.latest",
    "load.at",
    "history.100",
    "history.500",
    "history.500.small",
    "disk.duckdb",
    "import.typedflow",
    "memory.none",
    "memory.duckdb",
)
"""Figures of typedflow alone: measured in every run."""

PEER_RATIOS = (
    "vs.langgraph.none.100",
    "vs.pydantic_graph.none.100",
    "vs.langgraph.memory.100",
    "vs.pydantic_graph.full.100",
    "vs.langgraph.sqlite.100",
    "vs.langgraph.threads",
    "vs.langgraph.disk",
    "vs.langgraph.import",
)
"""Ratios against the peers: rows in every run, values only where the peers are installed."""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text(encoding="utf-8"))


def test_quick_run_reports_every_typedflow_figure(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, data = quick_run
    figures = {f["key"]: f for f in data["figures"]}
    assert data["meta"]["mode"] == "quick"
    for key in TYPEDFLOW_KEYS:
        figure = figures[key]
        assert isinstance(figure["value"], float), figure
        assert figure["value"] > 0, figure
        assert figure["result"] in ("PASS", "FAIL", "n.a."), figure
        assert figure["label"] in stdout, figure
    assert figures["ratio.duckdb_step_vs_insert"]["target"] == {"op": "<=", "bound": 1.25}
    assert figures["concurrent.threads"]["target"] == {"op": ">=", "bound": 20_000}
    assert stdout.splitlines()[3].split() == ["figure", "value", "target", "result", "note"]


def test_quick_run_keeps_big_and_peer_rows_with_a_reason(
    quick_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, data = quick_run
    figures = {f["key"]: f for f in data["figures"]}
    for key in ("big.load_latest", "big.load_at", "big.aggregate"):
        assert figures[key]["value"] is None
        assert figures[key]["result"] == "n.a."
        assert "--big" in figures[key]["note"]
    for key in PEER_RATIOS:
        figure = figures[key]
        assert figure["target"] is not None, figure
        if figure["value"] is None:
            assert figure["result"] == "n.a.", figure
            assert "skipped" in figure["note"], figure
        else:
            assert figure["result"] in ("PASS", "FAIL"), figure
    assert "peers: LangGraph: " in stdout


def test_figure_verdicts() -> None:
    assert Figure(key="a", label="a", value=3.0, unit="x", target=Target("<=", 3)).result == "PASS"
    assert Figure(key="a", label="a", value=3.1, unit="x", target=Target("<=", 3)).result == "FAIL"
    assert Figure(key="a", label="a", value=3.0, unit="x", target=Target(">", 3)).result == "FAIL"
    assert Figure(key="a", label="a", value=2.0, unit="x").result == "n.a."
    assert Figure(key="a", label="a", value=None, unit="x", target=Target(">", 1)).result == "n.a."


def test_table_aligns_rows() -> None:
    text = table(
        [
            Figure(key="a", label="short", value=1.5, unit="ms", target=Target("<", 2)),
            Figure(key="b", label="a longer label", value=None, unit="ms", note="skipped: why"),
        ]
    )
    assert text.splitlines() == [
        "figure            value  target     result  note",
        "--------------  -------  ---------  ------  ----",
        "short           1.50 ms  < 2.00 ms  PASS",
        "a longer label        -             n.a.    skipped: why",
    ]
