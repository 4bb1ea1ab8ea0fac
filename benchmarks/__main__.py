"""Run the benchmarks and print a table of figures next to their targets.

Usage: ``python -m benchmarks [--quick] [--big] [--json PATH] [--no-peers]``
(or ``scripts/bench``; ``scripts/bench --peers`` installs the peers first).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import duckdb

import typedflow
from benchmarks import peers, workloads
from benchmarks.common import Plan, median
from benchmarks.report import Figure, Target, skipped, summary, table, write_json

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
"""The repository root, where the import-time subprocesses run."""

MB = 1_000_000
NAMES = {
    "none": "no checkpointer",
    "memory": "InMemoryCheckpointer",
    "duckdb": "DuckDB durability=step",
    "duckdb_batch": "DuckDB durability=batch",
}
"""How the report names typedflow's backends."""
LANGGRAPH_NAMES = {"none": "no saver", "memory": "InMemorySaver", "sqlite": "SqliteSaver"}
PYDANTIC_NAMES = {"none": "no persistence", "full": "FullStatePersistence"}


def progress(text: str) -> None:
    """Say what is being measured (on stderr, so stdout holds only the report)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def step_figure(key: str, label: str, seconds: float) -> Figure:
    """A per-step figure: microseconds per step, and steps per second."""
    micros = seconds * 1e6
    return Figure(
        key=key,
        label=label,
        value=micros,
        unit="µs/step",
        shown=f"{micros:,.1f} µs/step = {1 / seconds:,.0f} steps/s",
    )


def ms_figure(
    key: str, label: str, seconds: float, target: Target | None = None, note: str = ""
) -> Figure:
    """A latency figure in milliseconds."""
    return Figure(key=key, label=label, value=seconds * 1e3, unit="ms", target=target, note=note)


def ratio_figure(
    key: str, label: str, value: float | None, target: Target, why_missing: str = ""
) -> Figure:
    """A ratio against a target (``x``), or a skipped one."""
    if value is None:
        return skipped(key, label, "x", why_missing, target)
    return Figure(key=key, label=label, value=value, unit="x", target=target)


def at_least(bound: float) -> Target:
    """The target ``>= bound``."""
    return Target(">=", bound)


def import_seconds(module: str, repeats: int) -> float:
    """Seconds ``import module`` adds to a fresh interpreter's start: the median of
    ``python -c "import module"`` minus the median of ``python -c pass``."""

    def run(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - t0

    bare: list[float] = []
    loaded: list[float] = []
    run("pass")  # the first start warms the file cache
    for _ in range(repeats):
        bare.append(run("pass"))
        loaded.append(run(f"import {module}"))
    return max(0.0, median(loaded) - median(bare))


def versions(names: Sequence[str]) -> str:
    """``name version`` of each installed distribution."""
    return ", ".join(f"{n} {metadata.version(n)}" for n in names)


class Bench:
    """One run of every benchmark, collecting figures in report order."""

    def __init__(
        self, plan: Plan, directory: Path, langgraph: ModuleType | str, pyg: ModuleType | str
    ) -> None:
        self.plan = plan
        self.dir = directory
        self.langgraph = langgraph
        self.pydantic_graph = pyg
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def measure(self, what: str, fn: Callable[[], T]) -> T:
        progress(what)
        return fn()

    def run(self) -> None:
        plan = self.plan
        large = plan.sizes[1]
        tf = self.typedflow_steps()
        self.duckdb_commit(large)
        self.concurrency()
        self.reads(large)
        self.big()
        disk = self.figures_disk(tf)
        typedflow_import = self.measure(
            "import typedflow", lambda: import_seconds("typedflow", plan.import_repeats)
        )
        self.add(ms_figure("import.typedflow", "import typedflow", typedflow_import))
        self.memory()
        self.peers(tf, disk, typedflow_import)

    # ----- typedflow ------------------------------------------------------------------------

    def typedflow_steps(self) -> dict[tuple[str, int], float]:
        out: dict[tuple[str, int], float] = {}
        self.disk: int = 0
        for backend in workloads.BACKENDS:
            for steps in self.plan.sizes:
                label = f"per step, {NAMES[backend]}, {steps:,} steps"
                run = self.measure(
                    label, partial(workloads.step_run, self.plan, backend, steps, self.dir)
                )
                out[(backend, steps)] = run.seconds
                if backend == "duckdb" and steps == self.plan.sizes[1]:
                    self.disk = run.disk
                self.add(step_figure(f"steps.{backend}.{steps}", label, run.seconds))
        small, large = self.plan.sizes
        for backend in workloads.BACKENDS:
            self.add(
                Figure(
                    key=f"growth.{backend}",
                    label=f"growth, {NAMES[backend]}: per step at {large:,} / at {small:,}",
                    value=out[(backend, large)] / out[(backend, small)],
                    unit="x",
                    target=Target("<=", 1.2),
                )
            )
        return out

    def duckdb_commit(self, steps: int) -> None:
        typedflow_step, insert = self.measure(
            f"DuckDB committed single-row insert, alternating with {steps:,}-step runs",
            lambda: workloads.step_and_insert(self.plan, steps, self.dir),
        )
        self.add(
            Figure(
                key="duckdb.insert_commit",
                label="DuckDB itself: one committed single-row insert (autocommit)",
                value=insert * 1e6,
                unit="µs",
                shown=f"{insert * 1e6:,.1f} µs = {1 / insert:,.0f} commits/s",
            )
        )
        self.add(
            Figure(
                key="ratio.duckdb_step_vs_insert",
                label=f"DuckDB durability=step per step ({steps:,} steps) / one committed insert",
                value=typedflow_step / insert,
                unit="x",
                target=Target("<=", 1.25),
                note="measured alternately, one of each per repeat",
            )
        )

    def concurrency(self) -> None:
        plan = self.plan
        load = f"{plan.concurrent_runs} runs x {plan.concurrent_steps} steps"
        threads = self.measure(
            f"{load} in Python threads", lambda: workloads.concurrent_threads(plan, self.dir)
        )
        self.threads = threads
        self.add(
            Figure(
                key="concurrent.threads",
                label=f"{plan.concurrent_runs} Python threads, one DuckDB checkpointer (step)",
                value=threads,
                unit="checkpoints/s",
                target=Target(">=", 20_000),
                note=load,
            )
        )
        tasks = self.measure(
            f"{load} in asyncio tasks", lambda: workloads.concurrent_tasks(plan, self.dir)
        )
        self.add(
            Figure(
                key="concurrent.tasks",
                label=f"{plan.concurrent_runs} asyncio tasks, one DuckDB checkpointer (step)",
                value=tasks,
                unit="checkpoints/s",
                target=Target(">=", 20_000),
                note=load + ", async nodes",
            )
        )
        batch = self.measure(
            "batched small state", lambda: workloads.batch_small_state(plan, self.dir)
        )
        self.add(
            Figure(
                key="batch.small_state",
                label="one run, DuckDB durability=batch, one-int state",
                value=batch,
                unit="checkpoints/s",
                target=Target(">=", 50_000),
                note=f"{plan.batch_steps:,} steps",
            )
        )

    def reads(self, steps: int) -> None:
        plan = self.plan
        reads = self.measure(
            f"resume and loads on {steps:,}-step threads",
            lambda: workloads.read_figures(plan, steps, self.dir),
        )
        on = f"{steps:,}-step thread"
        self.add(
            ms_figure(
                "resume.interrupted",
                f"resume an interrupted {on} (runs 1 step)",
                reads.resume_interrupted,
            )
        )
        self.add(ms_figure("resume.ended", f"resume an ended {on}", reads.resume_ended))
        self.add(ms_figure("load.latest", f"load latest, {on}", reads.load_latest))
        self.add(ms_figure("load.at", f"load_at middle step, {on}", reads.load_at))
        for n in plan.history_steps:
            seconds = self.measure(
                f"history of {n:,} steps",
                partial(workloads.history_listing, plan, n, self.dir),
            )
            self.add(
                ms_figure(
                    f"history.{n}",
                    f"history, whole {n:,}-step thread",
                    seconds,
                    Target("<", 50) if n >= 10_000 else None,
                )
            )
        n = plan.history_steps[1]
        seconds = self.measure(
            f"history of {n:,} steps, small state",
            lambda: workloads.history_listing(plan, n, self.dir, small=True),
        )
        self.add(
            ms_figure(
                f"history.{n}.small",
                f"history, whole {n:,}-step thread, one-int state",
                seconds,
                Target("<", 50) if n >= 10_000 else None,
            )
        )

    def big(self) -> None:
        plan = self.plan
        rows = plan.big_threads * (plan.big_steps + 1)
        on = f"{rows:,} checkpoints / {plan.big_threads:,} threads"
        real = rows >= 1_000_000
        keys = (
            ("big.load_latest", f"load latest, {on}", Target("<", 2) if real else None),
            ("big.load_at", f"load_at random step, {on}", Target("<", 2) if real else None),
            ("big.aggregate", f"SQL aggregate over {on}", Target("<", 50) if real else None),
        )
        result: workloads.BigFigures | str = "skipped: pass --big to build the file (a few minutes)"
        if plan.big:
            result = self.measure(f"storing {on}", lambda: workloads.big_figures(plan, self.dir))
        if isinstance(result, str):
            for key, label, target in keys:
                self.add(skipped(key, label, "ms", result, target))
            return
        note = f"stored in {result.build:.0f} s via save(), durability=batch"
        values = (result.load_latest, result.load_at, result.aggregate)
        for (key, label, target), value in zip(keys, values, strict=True):
            self.add(ms_figure(key, label, value, target, note))

    def figures_disk(self, tf: dict[tuple[str, int], float]) -> float:
        large = self.plan.sizes[1]
        size = self.disk / MB
        self.add(
            Figure(
                key="disk.duckdb",
                label=f"DuckDB file after a {large:,}-step run (100-char message per step)",
                value=size,
                unit="MB",
                target=Target("<=", 5),
                note="durability=step; plus a 2-step warm-up thread",
            )
        )
        return size

    def memory(self) -> None:
        large = self.plan.sizes[1]
        for backend in workloads.BACKENDS:
            peak = self.measure(
                f"peak memory, {NAMES[backend]}",
                partial(workloads.peak_memory, backend, large, self.dir),
            )
            self.add(
                Figure(
                    key=f"memory.{backend}",
                    label=f"peak Python heap, {NAMES[backend]}, {large:,} steps",
                    value=peak / MB,
                    unit="MB",
                    note="tracemalloc (DuckDB's own memory is not counted)"
                    if backend.startswith("duckdb")
                    else "tracemalloc",
                )
            )

    # ----- peers ----------------------------------------------------------------------------

    def peers(self, tf: dict[tuple[str, int], float], disk: float, tf_import: float) -> None:
        plan = self.plan
        lg = self.langgraph
        pg = self.pydantic_graph
        lg_steps: dict[tuple[str, int], float] = {}
        pg_steps: dict[tuple[str, int], float] = {}
        lg_disk: float | None = None
        lg_threads: float | None = None
        lg_import: float | None = None
        large = plan.sizes[1]
        if isinstance(lg, ModuleType):
            for kind in lg.SAVERS:
                for steps in plan.sizes:
                    label = f"LangGraph per step, {LANGGRAPH_NAMES[kind]}, {steps:,} steps"
                    seconds, size = self.measure(
                        label, partial(lg.step_run, plan, kind, steps, self.dir)
                    )
                    lg_steps[(kind, steps)] = seconds
                    if kind == "sqlite" and steps == large:
                        lg_disk = size / MB
                    self.add(step_figure(f"langgraph.steps.{kind}.{steps}", label, seconds))
            lg_threads = self.measure(
                "LangGraph in Python threads", lambda: lg.concurrent_threads(plan, self.dir)
            )
            self.add(
                Figure(
                    key="langgraph.concurrent.threads",
                    label=f"LangGraph {plan.concurrent_runs} Python threads, one SqliteSaver",
                    value=lg_threads,
                    unit="checkpoints/s",
                    note=f"{plan.concurrent_runs} runs x {plan.concurrent_steps} steps",
                )
            )
            self.add(
                Figure(
                    key="langgraph.disk.sqlite",
                    label=f"LangGraph SQLite file after a {large:,}-step run",
                    value=lg_disk,
                    unit="MB",
                )
            )
            lg_import = self.measure(
                "import langgraph.graph", lambda: import_seconds(lg.IMPORT, plan.import_repeats)
            )
            self.add(ms_figure("import.langgraph", f"import {lg.IMPORT}", lg_import))
            for kind in lg.SAVERS:
                peak = self.measure(
                    f"LangGraph peak memory, {kind}",
                    partial(lg.peak_memory, kind, large, self.dir),
                )
                self.add(
                    Figure(
                        key=f"langgraph.memory.{kind}",
                        label=f"LangGraph peak Python heap, {LANGGRAPH_NAMES[kind]}, "
                        f"{large:,} steps",
                        value=peak / MB,
                        unit="MB",
                        note="tracemalloc",
                    )
                )
        if isinstance(pg, ModuleType):
            for kind in pg.PERSISTENCES:
                for steps in plan.sizes:
                    label = f"pydantic-graph per step, {PYDANTIC_NAMES[kind]}, {steps:,} steps"
                    seconds = self.measure(label, partial(pg.step_run, plan, kind, steps))
                    pg_steps[(kind, steps)] = seconds
                    self.add(step_figure(f"pydantic_graph.steps.{kind}.{steps}", label, seconds))
            for kind in pg.PERSISTENCES:
                peak = self.measure(
                    f"pydantic-graph peak memory, {kind}", partial(pg.peak_memory, kind, large)
                )
                self.add(
                    Figure(
                        key=f"pydantic_graph.memory.{kind}",
                        label=f"pydantic-graph peak Python heap, {PYDANTIC_NAMES[kind]}, "
                        f"{large:,} steps",
                        value=peak / MB,
                        unit="MB",
                        note="tracemalloc",
                    )
                )
        lg_why = "" if isinstance(lg, ModuleType) else "LangGraph skipped (see above)"
        pg_why = "" if isinstance(pg, ModuleType) else "pydantic-graph skipped (see above)"

        def vs(peer: dict[tuple[str, int], float], kind: str, backend: str, n: int) -> float | None:
            if (kind, n) not in peer:
                return None
            return peer[(kind, n)] / tf[(backend, n)]

        # (key, label, the peer's figures, the peer's kind, typedflow's backend, target)
        comparisons: list[tuple[str, str, dict[tuple[str, int], float], str, str, Target]] = [
            (
                "langgraph.none",
                "vs LangGraph, no checkpointer",
                lg_steps,
                "none",
                "none",
                at_least(20),
            ),
            (
                "pydantic_graph.none",
                "vs pydantic-graph, no persistence",
                pg_steps,
                "none",
                "none",
                Target(">", 1),
            ),
            (
                "langgraph.memory",
                "InMemoryCheckpointer vs LangGraph InMemorySaver",
                lg_steps,
                "memory",
                "memory",
                at_least(20),
            ),
            (
                "pydantic_graph.full",
                "InMemoryCheckpointer vs pydantic-graph FullStatePersistence",
                pg_steps,
                "full",
                "memory",
                at_least(5),
            ),
            (
                "langgraph.sqlite",
                "DuckDB step vs LangGraph SqliteSaver",
                lg_steps,
                "sqlite",
                "duckdb",
                at_least(1),
            ),
        ]
        for key, label, peer, kind, backend, target in comparisons:
            why = lg_why if key.startswith("langgraph") else pg_why
            for n in plan.sizes:
                figure = ratio_figure(
                    f"vs.{key}.{n}",
                    f"steps/s, {label}, {n:,} steps",
                    vs(peer, kind, backend, n),
                    target,
                    why,
                )
                self.add(figure)
        self.add(
            ratio_figure(
                "vs.langgraph.threads",
                f"{plan.concurrent_runs} threads: DuckDB checkpoints/s vs LangGraph SqliteSaver",
                None if lg_threads is None else self.threads / lg_threads,
                Target(">=", 20),
                lg_why,
            )
        )
        self.add(
            ratio_figure(
                "vs.langgraph.disk",
                f"disk after {large:,} steps: DuckDB / LangGraph SQLite",
                None if not lg_disk else disk / lg_disk,
                Target("<=", 0.1),
                lg_why,
            )
        )
        self.add(
            ratio_figure(
                "vs.langgraph.import",
                "import time: typedflow / langgraph.graph",
                None if not lg_import else tf_import / lg_import,
                Target("<=", 0.2),
                lg_why,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; print the table; write the JSON file if asked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a reduced run (under 20 s)")
    parser.add_argument(
        "--big", action="store_true", help="build 1,000,000 stored checkpoints (a few minutes)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--no-peers", action="store_true", help="skip LangGraph and pydantic-graph")
    args = parser.parse_args(argv)
    plan = Plan.make(quick=args.quick, big=args.big)
    why = "--no-peers was given"
    langgraph = why if args.no_peers else peers.load("langgraph")
    pyg = why if args.no_peers else peers.load("pydantic_graph")
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "typedflow": typedflow.__version__,
        "duckdb": duckdb.__version__,
        "mode": "quick" if plan.quick else "full",
        "big": plan.big,
        "langgraph": versions(langgraph.DISTRIBUTIONS)
        if isinstance(langgraph, ModuleType)
        else f"skipped: {langgraph}",
        "pydantic_graph": versions(pyg.DISTRIBUTIONS)
        if isinstance(pyg, ModuleType)
        else f"skipped: {pyg}",
    }
    started = time.perf_counter()
    with workloads.temp_dir() as directory:
        bench = Bench(plan, Path(directory), langgraph, pyg)
        bench.run()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"typedflow {meta['typedflow']} benchmarks ({meta['mode']} run"
        f"{', --big' if plan.big else ', without --big'}), Python {meta['python']}, "
        f"DuckDB {meta['duckdb']}, {meta['cpus']} CPUs, {meta['platform']}"
    )
    print(f"peers: LangGraph: {meta['langgraph']}; pydantic-graph: {meta['pydantic_graph']}")
    print()
    print(table(bench.figures))
    print()
    print(f"{summary(bench.figures)}; took {meta['seconds']} s")
    if args.json is not None:
        write_json(args.json, meta, bench.figures)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
