"""The typedflow workloads: state schemas, graphs, and the measurements made on them.

Every measurement uses the public API only (``Runner``, the checkpointers and
the documented tables), so it keeps working while the internals change.

The main workload is a one-node loop: node ``talk`` appends one 100-character
message to a tuple field (``append`` reducer) and adds 1 to a counter (``add``
reducer); a conditional route ends the run once the counter reaches ``n``.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs
import duckdb

from benchmarks.common import Plan, file_size, median, message, repeated, run_together, timed
from typedflow import (
    END,
    UNSET,
    Checkpoint,
    Checkpointer,
    Completed,
    InMemoryCheckpointer,
    Interrupted,
    NodeWrite,
    Runner,
    StateSchema,
    Unset,
    field,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.reducers import add, append

Backend: TypeAlias = Literal["none", "memory", "duckdb", "duckdb_batch"]
"""Where a run's checkpoints go:

- ``"none"``: no checkpointer;
- ``"memory"``: ``InMemoryCheckpointer``;
- ``"duckdb"``: ``DuckDBCheckpointer`` on a file, ``durability="step"`` (the default);
- ``"duckdb_batch"``: the same with ``durability="batch"``.
"""

BACKENDS: tuple[Backend, ...] = ("none", "memory", "duckdb", "duckdb_batch")
"""Every backend, in the order the report lists them."""


@attrs.frozen
class Say:
    """An update of :class:`Chat`: one message to append, and how much to count."""

    messages: str | Unset = UNSET
    """Appended to the messages."""
    count: int | Unset = UNSET
    """Added to the counter."""


@attrs.frozen
class Chat(StateSchema[Say]):
    """The benchmark's state: a growing message log and a step counter."""

    messages: tuple[str, ...] = field(default=(), reducer=append)
    """One message per step."""
    count: int = field(default=0, reducer=add)
    """How many steps ran."""


@Chat.node
def talk(state: Chat) -> Say:
    """Append this step's message."""
    return Say(messages=message(state.count), count=1)


@Chat.node(name="talk")
async def atalk(state: Chat) -> Say:
    """:func:`talk` as an async node."""
    return Say(messages=message(state.count), count=1)


@Chat.node
def finish(state: Chat) -> None:
    """The node a run is interrupted before (to measure resuming it)."""


@attrs.frozen
class Tick:
    """An update of :class:`Small`."""

    n: int = 1
    """Added to the counter."""


@attrs.frozen
class Small(StateSchema[Tick]):
    """A small state: one counter."""

    n: int = 0
    """How many steps ran."""

    def apply(self, update: Tick) -> Small:
        return Small(self.n + update.n)


@Small.node
def tick(state: Small) -> Tick:
    """Count one step."""
    return Tick()


def chat_runner(
    steps: int,
    checkpointer: Checkpointer[Chat] | None = None,
    *,
    is_async: bool = False,
    interrupt: bool = False,
) -> Runner[Chat]:
    """The one-node loop over :class:`Chat` that runs ``steps`` steps.

    With ``interrupt``, the loop goes on to node ``finish`` instead of ending,
    and the run stops (is interrupted) before it, after ``steps`` steps.
    """
    last = "finish" if interrupt else END
    return Runner(
        Chat,
        nodes=[atalk if is_async else talk, finish],
        entry="talk",
        routes={"talk": lambda s: last if s.count >= steps else "talk"},
        checkpointer=checkpointer,
        interrupt_before=["finish"] if interrupt else (),
        step_limit=steps + 10,
    )


def small_runner(steps: int, checkpointer: Checkpointer[Small]) -> Runner[Small]:
    """The one-node loop over :class:`Small` that runs ``steps`` steps."""
    return Runner(
        Small,
        nodes=[tick],
        entry="tick",
        routes={"tick": lambda s: END if s.n >= steps else "tick"},
        checkpointer=checkpointer,
        step_limit=steps + 10,
    )


@contextmanager
def chat_store(backend: Backend, path: Path) -> Iterator[Checkpointer[Chat] | None]:
    """A fresh checkpointer of ``backend`` (on the new file ``path`` for DuckDB)."""
    if backend == "none":
        yield None
    elif backend == "memory":
        yield InMemoryCheckpointer(Chat)
    else:
        durability: Literal["step", "batch"] = "batch" if backend == "duckdb_batch" else "step"
        with DuckDBCheckpointer(Chat, path, durability=durability) as cp:
            yield cp


# ----- measurements ----------------------------------------------------------------------


def _warm_up(checkpointer: Checkpointer[Chat] | None, *, is_async: bool = False) -> None:
    """A two-step run, so that first-use costs (schema info, SQL plans) are not timed."""
    runner = chat_runner(2, checkpointer, is_async=is_async)
    if is_async:
        asyncio.run(runner.ainvoke(Chat(), thread_id="warm-up"))
    else:
        runner.invoke(Chat(), thread_id="warm-up")


def _expect(result: object, kind: type) -> None:
    if not isinstance(result, kind):
        raise RuntimeError(f"the benchmark run ended as {result!r}, not as a {kind.__name__}")


@attrs.frozen
class StepRun:
    """The per-step figure of one backend and run length."""

    seconds: float
    """Median wall time per step."""
    disk: int
    """For DuckDB: bytes on disk of the first repeat's file (the run and a two-step warm-up)."""


def step_run(plan: Plan, backend: Backend, steps: int, directory: Path) -> StepRun:
    """Time one ``steps``-step run on ``backend``, with a fresh store per repeat."""
    sizes: list[int] = []

    def measure(r: int) -> float:
        path = directory / f"steps-{backend}-{steps}-{r}.duckdb"
        with chat_store(backend, path) as cp:
            _warm_up(cp)
            runner = chat_runner(steps, cp)
            seconds = timed(lambda: _expect(runner.invoke(Chat(), thread_id="t"), Completed))
        if path.exists():
            sizes.append(file_size(path))
        return seconds / steps

    seconds = repeated(plan, measure)
    return StepRun(seconds, sizes[0] if sizes else 0)


def peak_memory(backend: Backend, steps: int, directory: Path) -> int:
    """Peak Python heap (tracemalloc) in bytes during one ``steps``-step run on ``backend``."""
    with chat_store(backend, directory / f"memory-{backend}-{steps}.duckdb") as cp:
        _warm_up(cp)
        runner = chat_runner(steps, cp)
        gc.collect()
        tracemalloc.start()
        try:
            runner.invoke(Chat(), thread_id="t")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def insert_commit(plan: Plan, directory: Path) -> float:
    """Seconds of DuckDB's own committed single-row insert into a tiny table (autocommit)."""
    payload = message(0)

    def measure(r: int) -> float:
        con = duckdb.connect(str(directory / f"insert-{r}.duckdb"))
        try:
            con.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
            con.execute("INSERT INTO t VALUES (?, ?)", [-1, payload])  # warm-up

            def run() -> None:
                for i in range(plan.insert_count):
                    con.execute("INSERT INTO t VALUES (?, ?)", [i, payload])

            return timed(run) / plan.insert_count
        finally:
            con.close()

    return repeated(plan, measure)


def step_and_insert(plan: Plan, steps: int, directory: Path) -> tuple[float, float]:
    """Seconds per step of a ``steps``-step run with default DuckDB durability, and of DuckDB's
    own committed single-row insert, measured alternately (one of each per repeat), so that
    the machine's drift (its disk's flush latency moves over minutes) weighs on both alike."""
    inserts: list[float] = []

    once = attrs.evolve(plan, repeats=1)

    def measure(r: int) -> float:
        pair = directory / f"pair-{r}"
        pair.mkdir()
        inserts.append(insert_commit(once, pair))
        return step_run(once, "duckdb", steps, pair).seconds

    step = repeated(plan, measure)
    return step, median(inserts)


def concurrent_threads(plan: Plan, directory: Path) -> float:
    """Checkpoints per second of many Python threads running at once on one DuckDB
    checkpointer (default durability)."""
    runs, steps = plan.concurrent_runs, plan.concurrent_steps

    def measure(r: int) -> float:
        with DuckDBCheckpointer(Chat, directory / f"threads-{r}.duckdb") as cp:
            _warm_up(cp)
            runner = chat_runner(steps, cp)
            elapsed = run_together(
                runs, lambda i: _expect(runner.invoke(Chat(), thread_id=f"run-{i}"), Completed)
            )
            stored = len(cp.threads()) - 1
            if stored != runs:
                raise RuntimeError(f"{runs} runs ran, but {stored} threads were stored")
        return runs * (steps + 1) / elapsed

    return repeated(plan, measure)


def concurrent_tasks(plan: Plan, directory: Path) -> float:
    """Checkpoints per second of many asyncio tasks (async nodes) running at once on one
    DuckDB checkpointer (default durability)."""
    runs, steps = plan.concurrent_runs, plan.concurrent_steps

    def measure(r: int) -> float:
        with DuckDBCheckpointer(Chat, directory / f"tasks-{r}.duckdb") as cp:
            _warm_up(cp, is_async=True)
            runner = chat_runner(steps, cp, is_async=True)

            async def main() -> float:
                gc.collect()
                t0 = time.perf_counter()
                results = await asyncio.gather(
                    *(runner.ainvoke(Chat(), thread_id=f"run-{i}") for i in range(runs))
                )
                elapsed = time.perf_counter() - t0
                for result in results:
                    _expect(result, Completed)
                return elapsed

            return runs * (steps + 1) / asyncio.run(main())

    return repeated(plan, measure)


def batch_small_state(plan: Plan, directory: Path) -> float:
    """Checkpoints per second of one run of a one-counter state, batched durability."""
    steps = plan.batch_steps

    def measure(r: int) -> float:
        with DuckDBCheckpointer(
            Small, directory / f"batch-small-{r}.duckdb", durability="batch"
        ) as cp:
            small_runner(2, cp).invoke(Small(), thread_id="warm-up")
            runner = small_runner(steps, cp)
            return (steps + 1) / timed(lambda: runner.invoke(Small(), thread_id="t"))

    return repeated(plan, measure)


@attrs.frozen(kw_only=True)
class ReadFigures:
    """Read-side latencies on a file of equally long threads, in seconds."""

    resume_interrupted: float
    """Resume a thread interrupted after its last loop step (it runs one more step, ends)."""
    resume_ended: float
    """Resume a thread whose run has ended (nothing is left to run)."""
    load_latest: float
    """Load a thread's latest checkpoint."""
    load_at: float
    """Load a thread's checkpoint at its middle step."""


def read_figures(plan: Plan, steps: int, directory: Path) -> ReadFigures:
    """Store interrupted and ended runs of ``steps`` steps (batched durability, to build
    fast), reopen the file with the default durability, and time resume, load and load_at."""
    path = directory / f"reads-{steps}.duckdb"
    count = plan.read_threads
    with DuckDBCheckpointer(Chat, path, durability="batch") as cp:
        stopping = chat_runner(steps, cp, interrupt=True)
        ending = chat_runner(steps, cp)
        for i in range(count + 1):
            _expect(stopping.invoke(Chat(), thread_id=f"stop-{i}"), Interrupted)
            _expect(ending.invoke(Chat(), thread_id=f"end-{i}"), Completed)
    with DuckDBCheckpointer(Chat, path) as cp:
        stopping = chat_runner(steps, cp, interrupt=True)
        ending = chat_runner(steps, cp)
        _expect(stopping.resume("stop-0"), Completed)  # warm-up
        _expect(ending.resume("end-0"), Completed)
        ids = range(1, count + 1)
        loads = [f"end-{i}" for _ in range(plan.repeats) for i in ids]
        mid = steps // 2
        return ReadFigures(
            resume_interrupted=median(
                [timed(partial(_resumed, stopping, f"stop-{i}")) for i in ids]
            ),
            resume_ended=median([timed(partial(_resumed, ending, f"end-{i}")) for i in ids]),
            load_latest=median([timed(partial(cp.load, t)) for t in loads]),
            load_at=median([timed(partial(cp.load_at, t, mid)) for t in loads]),
        )


def _resumed(runner: Runner[Chat], thread_id: str) -> None:
    _expect(runner.resume(thread_id), Completed)


def history_listing(plan: Plan, steps: int, directory: Path, *, small: bool = False) -> float:
    """Seconds to list the whole history of one ``steps``-step thread (every checkpoint,
    newest first), on a file reopened with the default durability."""
    path = directory / f"history-{steps}-{'small' if small else 'chat'}.duckdb"
    if small:
        with DuckDBCheckpointer(Small, path, durability="batch") as scp:
            small_runner(steps, scp).invoke(Small(), thread_id="t")
        with DuckDBCheckpointer(Small, path) as scp:
            return _listing(plan, lambda: scp.history("t"), steps)
    with DuckDBCheckpointer(Chat, path, durability="batch") as cp:
        chat_runner(steps, cp).invoke(Chat(), thread_id="t")
    with DuckDBCheckpointer(Chat, path) as cp:
        return _listing(plan, lambda: cp.history("t"), steps)


def _listing(plan: Plan, history: Callable[[], list[Checkpoint[Any]]], steps: int) -> float:
    def measure(r: int) -> float:
        found: list[Checkpoint[Any]] = []
        seconds = timed(lambda: found.extend(history()))
        if len(found) != steps + 1:
            raise RuntimeError(f"history listed {len(found)} checkpoints, not {steps + 1}")
        return seconds

    return repeated(plan, measure)


# ----- a million stored checkpoints ------------------------------------------------------


@attrs.frozen(kw_only=True)
class BigFigures:
    """Latencies on a file of many stored checkpoints, in seconds."""

    rows: int
    """How many checkpoints the file holds."""
    threads: int
    """Across how many threads."""
    build: float
    """How long storing them took."""
    load_latest: float
    """Load a random thread's latest checkpoint."""
    load_at: float
    """Load a random thread's checkpoint at a random step."""
    aggregate: float
    """One SQL aggregate (group by status: count, average counter, total duration) over all rows."""


def _thread_checkpoints(thread_id: str, steps: int) -> Iterator[Checkpoint[Chat]]:
    """The checkpoints a ``steps``-step run of the loop saves, made without running it."""
    messages: tuple[str, ...] = ()
    for step in range(steps + 1):
        writes: tuple[NodeWrite[object], ...] = ()
        if step:
            text = message(step - 1)
            messages = (*messages, text)
            writes = (NodeWrite(node="talk", updates=(Say(messages=text, count=1),)),)
        yield Checkpoint(
            thread_id=thread_id,
            step=step,
            state=Chat(messages=messages, count=step),
            next=("talk",) if step < steps else (),
            writes=writes,
        )


def big_figures(plan: Plan, directory: Path) -> BigFigures | str:
    """Store ``plan.big_threads`` threads of ``plan.big_steps + 1`` checkpoints through the
    checkpointer's ``save`` (batched durability), then reopen the file and time loads and one
    SQL aggregate.

    Returns why the figures were skipped instead, when storing is projected to take longer
    than ``plan.big_budget`` seconds (projected again after every hundredth of the threads).
    """
    threads, steps = plan.big_threads, plan.big_steps
    path = directory / "big.duckdb"
    table = "chat_checkpoints"
    rng = random.Random(7)
    # Random ids, as most applications use (UUIDs): sequential ones ("t1", "t2", ...) let
    # DuckDB skip most of the table by each row group's range of ids, which random ones do not.
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(threads)]
    with DuckDBCheckpointer(Chat, path, durability="batch", batch_size=10_000) as cp:
        t0 = time.perf_counter()
        probe = max(1, threads // 100)
        for i, thread_id in enumerate(ids):
            for checkpoint in _thread_checkpoints(thread_id, steps):
                cp.save(checkpoint)
            if (i + 1) % probe == 0:
                # Saves slow down as the tables grow: project again at every hundredth.
                projected = (time.perf_counter() - t0) * threads / (i + 1)
                if projected > plan.big_budget:
                    return (
                        f"skipped: storing {threads * (steps + 1):,} checkpoints would take "
                        f"about {projected:.0f} s (budget {plan.big_budget:.0f} s)"
                    )
        cp.flush()
        build = time.perf_counter() - t0
    # Reopened with the default durability, as the other read figures are: the process that
    # loads a thread (a resume after a restart) is seldom the one that stored a million rows.
    with DuckDBCheckpointer(Chat, path) as cp:
        count = max(50, plan.repeats * 20)
        picks = [rng.choice(ids) for _ in range(count)]
        at = [rng.randrange(steps + 1) for _ in range(count)]
        cp.load(picks[0])  # warm-up
        cp.load_at(picks[0], at[0])
        load_latest = median([timed(partial(cp.load, t)) for t in picks])
        load_at = median([timed(partial(cp.load_at, t, s)) for t, s in zip(picks, at, strict=True)])
        con = cp.connection.cursor()
        try:
            query = (
                "SELECT status, count(*), avg(state.count), sum(duration) "
                f"FROM {table} GROUP BY status"
            )
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            con.execute(query).fetchall()  # warm-up
            aggregate = median([timed(lambda: con.execute(query).fetchall()) for _ in range(7)])
        finally:
            con.close()
    return BigFigures(
        rows=0 if row is None else int(row[0]),
        threads=threads,
        build=build,
        load_latest=load_latest,
        load_at=load_at,
        aggregate=aggregate,
    )


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for the benchmark's database files."""
    return tempfile.TemporaryDirectory(prefix="typedflow-bench-")
