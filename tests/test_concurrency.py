"""Concurrency: runs share one checkpointer, racing runners never fork a thread, a DuckDB file
in use by another process is refused.

Every backend is checked (in memory, DuckDB with each durability) with the
deterministic workflow of ``tests/crash_child.py``: each thread's states depend
only on its input, so every stored step is compared with an uninterrupted
reference run. Each thread's tag is in every log entry of its state, so a row
that lands in another thread cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.crash_child import Soak, Tick, reference, signature, soak_runner
from typedflow import (
    CheckpointError,
    Completed,
    ConflictError,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    Interrupted,
    Node,
    Runner,
    StoreLockedError,
)
from typedflow.checkpoint.base import Checkpoint
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

Backend = Literal["memory", "duckdb-step", "duckdb-batch"]
BACKENDS: list[Backend] = ["memory", "duckdb-step", "duckdb-batch"]
ROOT = Path(__file__).resolve().parents[1]
PY_THREADS = 16
ASYNC_TASKS = 64
GOAL = 14
"""Goal of the shared-checkpointer runs: 10 to 14 steps each, with parallel steps among them."""


def open_backend(backend: Backend, path: Path) -> HistoryCheckpointer[Soak]:
    if backend == "memory":
        return InMemoryCheckpointer(Soak)
    if backend == "duckdb-step":
        return DuckDBCheckpointer(Soak, path)
    return DuckDBCheckpointer(Soak, path, durability="batch", batch_size=16)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.param
    return value


@pytest.fixture
def shared(backend: Backend, tmp_path: Path) -> Iterator[HistoryCheckpointer[Soak]]:
    with open_backend(backend, tmp_path / "shared.duckdb") as cp:
        yield cp


def run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    """Run ``target(i)`` in ``count`` Python threads at once; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def guarded(i: int) -> None:
        try:
            start.wait(timeout=30)
            target(i)
        except BaseException as exc:  # noqa: BLE001  # collected; the caller asserts on them
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a thread did not finish"
    return errors


def check_thread(cp: HistoryCheckpointer[Soak], tag: str, goal: int) -> None:
    """The thread's history is complete (steps 0..N once each) and equals its reference run."""
    got = [signature(c) for c in reversed(cp.history(tag))]
    want = [signature(c) for c in reference(tag, goal)]
    assert [s[0] for s in got] == [s[0] for s in want], tag
    assert got == want, tag


# ----- many runs, one checkpointer -------------------------------------------------------------


def test_threads_and_tasks_share_one_checkpointer(
    backend: Backend, shared: HistoryCheckpointer[Soak], tmp_path: Path
) -> None:
    runner = soak_runner(shared)
    goals = {f"py-{i}": GOAL + i % 5 for i in range(PY_THREADS)}
    goals |= {f"aio-{i}": GOAL + i % 7 for i in range(ASYNC_TASKS)}

    def in_thread(i: int) -> None:
        tag = f"py-{i}"
        result = runner.invoke(Soak(tag=tag, goal=goals[tag]), thread_id=tag)
        assert isinstance(result, Completed)

    async def in_tasks() -> list[Completed[Soak] | Interrupted[Soak]]:
        return await asyncio.gather(
            *(
                runner.ainvoke(Soak(tag=tag, goal=goal), thread_id=tag)
                for tag, goal in goals.items()
                if tag.startswith("aio-")
            )
        )

    errors: list[BaseException] = []
    threads = threading.Thread(target=lambda: errors.extend(run_threads(in_thread, PY_THREADS)))
    threads.start()  # the Python threads and the asyncio tasks run at the same time
    results = asyncio.run(in_tasks())
    threads.join(timeout=120)
    assert errors == []
    assert all(isinstance(r, Completed) for r in results)
    assert sorted(t.thread_id for t in shared.threads()) == sorted(goals)
    for tag, goal in goals.items():
        check_thread(shared, tag, goal)
    if backend != "memory":
        shared.close()  # and what was committed is what a new process reads
        with open_backend(backend, tmp_path / "shared.duckdb") as reopened:
            for tag, goal in goals.items():
                check_thread(reopened, tag, goal)


def test_reads_while_runs_commit_see_whole_histories(backend: Backend, tmp_path: Path) -> None:
    """Loads and listings made while many runs commit (and, on DuckDB, while the log moves
    into the typed tables in the background, here every 4 checkpoints) see, for each thread,
    steps 0..k once each, equal to the reference run."""
    path = tmp_path / "reads.duckdb"
    cp: HistoryCheckpointer[Soak] = (
        DuckDBCheckpointer(Soak, path, batch_size=4)
        if backend == "duckdb-step"
        else open_backend(backend, path)
    )
    runner = soak_runner(cp)
    tags = [f"w-{i}" for i in range(PY_THREADS)]
    done = threading.Event()
    reads = 0

    def run(i: int) -> None:
        assert isinstance(runner.invoke(Soak(tag=tags[i], goal=GOAL), thread_id=tags[i]), Completed)

    def read_until_done() -> None:
        nonlocal reads
        rng = random.Random(7)
        while not done.is_set():
            tag = rng.choice(tags)
            try:
                got = [signature(c) for c in reversed(cp.history(tag))]
            except LookupError:
                continue  # not started yet
            want = [signature(c) for c in reference(tag, GOAL)]
            assert got == want[: len(got)], tag
            assert cp.load(tag).step >= len(got) - 1
            reads += 1

    with cp:
        failed: list[BaseException] = []
        reader = threading.Thread(
            target=lambda: failed.extend(run_threads(lambda _: read_until_done(), 1))
        )
        reader.start()
        errors = run_threads(run, len(tags))
        done.set()
        reader.join(timeout=60)
        assert errors == []
        assert failed == []
        assert not reader.is_alive()
        assert reads > 0
        for tag in tags:
            check_thread(cp, tag, GOAL)


# ----- two runners, one thread -----------------------------------------------------------------

ROUNDS = 20


def loop_runner(cp: HistoryCheckpointer[Soak], node: Node[Soak]) -> Runner[Soak]:
    """A runner of one node that loops forever and stops after every step."""
    return Runner(
        Soak,
        nodes=[node],
        entry=node.name,
        edges={node.name: node.name},
        interrupt_after=[node.name],
        checkpointer=cp,
    )


def contested_runners(
    cp: HistoryCheckpointer[Soak], driver: Literal["threads", "asyncio"]
) -> tuple[Runner[Soak], Runner[Soak], Callable[[], None]]:
    """Two runners of a node ``contested`` whose runs wait for each other inside the node, so
    both have loaded the same latest checkpoint before either saves the next step. Returns the
    runners and a function that makes a new barrier for the asyncio event loop of a round."""
    if driver == "threads":
        meet = threading.Barrier(2, timeout=10)

        def make(who: str) -> Runner[Soak]:
            @Soak.node(name="contested")
            def contested(state: Soak) -> Tick:
                meet.wait()
                time.sleep(random.uniform(0, 0.002))  # either may save first
                return Tick(who, add=state.n)

            return loop_runner(cp, contested)

        return make("A"), make("B"), lambda: None

    barrier: list[asyncio.Barrier] = []

    def make_async(who: str) -> Runner[Soak]:
        @Soak.node(name="contested")
        async def contested(state: Soak) -> Tick:
            async with asyncio.timeout(10):
                await barrier[0].wait()
            await asyncio.sleep(random.uniform(0, 0.002))
            return Tick(who, add=state.n)

        return loop_runner(cp, contested)

    def reset() -> None:
        barrier[:] = [asyncio.Barrier(2)]

    return make_async("A"), make_async("B"), reset


def resume_both(
    a: Runner[Soak],
    b: Runner[Soak],
    driver: Literal["threads", "asyncio"],
    reset: Callable[[], None],
) -> list[object]:
    """Resume thread "race" with both runners at once; what each returned or raised."""
    if driver == "threads":
        outcomes: list[object] = [None, None]

        def resume(i: int) -> None:
            try:
                outcomes[i] = (a, b)[i].resume("race")
            except ConflictError as exc:
                outcomes[i] = exc

        assert run_threads(resume, 2) == []
        return outcomes

    async def both() -> list[object]:
        reset()
        return list(
            await asyncio.gather(a.aresume("race"), b.aresume("race"), return_exceptions=True)
        )

    return asyncio.run(both())


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_two_runners_on_one_thread_never_fork_it(
    shared: HistoryCheckpointer[Soak], driver: Literal["threads", "asyncio"]
) -> None:
    first: Checkpoint[Soak] = Checkpoint(
        thread_id="race", step=0, state=Soak(tag="race"), next=("contested",)
    )
    shared.save(first)
    a, b, reset = contested_runners(shared, driver)
    wins = {"A": 0, "B": 0}
    for round_ in range(ROUNDS):
        outcomes = resume_both(a, b, driver, reset)
        won = [o for o in outcomes if isinstance(o, Interrupted)]
        lost = [o for o in outcomes if isinstance(o, ConflictError)]
        assert (len(won), len(lost)) == (1, 1), outcomes
        assert won[0].checkpoint.step == round_ + 1
        assert (lost[0].thread_id, lost[0].step) == ("race", round_ + 1)
        assert f"already has a checkpoint at step {round_ + 1}" in str(lost[0])
        assert "fork into a new thread id" in str(lost[0])
        (write,) = won[0].checkpoint.writes
        assert won[0].state.log[-1] == f"race/{write.updates[0].node}@{round_}"
        wins[write.updates[0].node] += 1
    history = list(reversed(shared.history("race")))
    assert [c.step for c in history] == list(range(ROUNDS + 1))  # unique, no gaps: linear
    for before, after in itertools.pairwise(history):
        (write,) = after.writes  # exactly one runner's node wrote each step
        state = before.state
        for update in write.updates:
            state = state.apply(update)
        assert after.state == state
    assert sum(wins.values()) == ROUNDS
    print(f"race ({driver}): {ROUNDS} conflicting steps, one winner each: {wins}")


@pytest.mark.parametrize("racers", [8])
def test_racing_runners_finish_a_thread_as_one_run_would(
    shared: HistoryCheckpointer[Soak], racers: int
) -> None:
    goal = 60
    ref = reference("free", goal)
    shared.save(ref[0])
    runner = soak_runner(shared)
    conflicts: list[ConflictError] = []
    lock = threading.Lock()

    def race(_: int) -> None:
        while not isinstance(runner.resume("free"), Completed):
            pass

    def race_through_conflicts(i: int) -> None:
        while True:
            try:
                race(i)
            except ConflictError as exc:
                with lock:
                    conflicts.append(exc)
            else:
                return

    assert run_threads(race_through_conflicts, racers) == []
    check_thread(shared, "free", goal)
    assert all(c.thread_id == "free" for c in conflicts)
    print(f"free race: {racers} runners, {len(ref)} steps, {len(conflicts)} conflicts")


# ----- a file in use by another process --------------------------------------------------------


def test_a_file_in_use_by_a_running_process_is_refused_and_left_intact(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    goal = 60
    args = [str(path), "busy", "step", "1", "0.002", str(goal), "16", "hold"]
    refusals: list[StoreLockedError] = []
    with subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        for line in child.stdout:
            event, step, _ = line.decode().split()
            # While it writes, and once it is done but still has the file open.
            if (event, step) == ("saved", "2") or event == "holding":
                with pytest.raises(StoreLockedError) as info:
                    DuckDBCheckpointer(Soak, path)
                refusals.append(info.value)
            if event == "holding":
                child.stdin.write(b"go on\n")
                child.stdin.flush()
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    assert len(refusals) == 2
    for exc in refusals:
        assert isinstance(exc, CheckpointError)
        assert isinstance(exc, RuntimeError)
        message = str(exc)
        assert str(path) in message
        assert "in use by another process" in message
        assert "close it there, or use another file" in message
    # The running process was not disturbed: its run is complete and exact.
    with DuckDBCheckpointer(Soak, path) as cp:
        check_thread(cp, "busy", goal)
        assert [t.thread_id for t in cp.threads()] == ["busy"]


@pytest.mark.parametrize("durability", ["step", "batch"])
def test_a_task_waiting_to_save_lets_the_event_loop_run(
    durability: Literal["step", "batch"], tmp_path: Path
) -> None:
    # A flush, a read or a move in another thread holds the checkpointer for as long as DuckDB
    # takes: an asyncio task's save must wait for it without stopping the loop's other tasks.
    steps = reference("held", 3)
    path = tmp_path / "held.duckdb"
    with DuckDBCheckpointer(Soak, path, durability=durability, batch_size=16) as cp:
        holding, release = threading.Event(), threading.Event()
        released: list[bool] = []

        def hold() -> None:
            with cp._lock:  # what a long commit or read holds
                holding.set()
                released.append(release.wait(timeout=10))

        async def main() -> None:
            await cp.asave(steps[0])  # the thread is known from here on
            holder = threading.Thread(target=hold)
            holder.start()
            holding.wait()
            save = asyncio.create_task(cp.asave(steps[1]))
            for _ in range(20):  # other tasks run while the save waits
                await asyncio.sleep(0)
            assert not save.done()
            release.set()
            await save
            holder.join()

        asyncio.run(main())
        assert released == [True]  # the loop let the test release the lock
        assert [signature(c) for c in cp.history("held")] == [signature(c) for c in steps[1::-1]]
    # close() stops the worker thread that batched durability's asave used.
    assert not [t for t in threading.enumerate() if t.name.startswith("typedflow soak")]


def test_tasks_starting_threads_at_once_are_looked_up_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under batched durability, the first asave of a thread the checkpointer does not know
    # looks it up in the database (off the event loop); those that wait meanwhile share one
    # lookup, and each still finds what a save on its own would.
    path = tmp_path / "starts.duckdb"
    first = {tag: reference(tag, 3)[0] for tag in ("stored", "taken", *"abcdef")}
    with DuckDBCheckpointer(Soak, path) as earlier:
        earlier.save(first["stored"])
    with DuckDBCheckpointer(Soak, path, table="other_soak") as other:
        other.save(first["taken"])
    lookups: list[int] = []
    find = DuckDBCheckpointer._find

    def counted(cp: DuckDBCheckpointer[Soak], unknown: list[str]) -> None:
        lookups.append(len(unknown))
        find(cp, unknown)

    monkeypatch.setattr(DuckDBCheckpointer, "_find", counted)
    with DuckDBCheckpointer(Soak, path, durability="batch", batch_size=64) as cp:

        async def main() -> list[BaseException | None]:
            saves = (cp.asave(c) for c in first.values())
            return await asyncio.gather(*saves, return_exceptions=True)

        outcomes = dict(zip(first, asyncio.run(main()), strict=True))
        assert isinstance(outcomes.pop("stored"), ConflictError)  # stored by an earlier run
        taken = outcomes.pop("taken")
        assert isinstance(taken, CheckpointError)
        assert "already used by schema" in str(taken)
        assert outcomes == dict.fromkeys("abcdef")
        assert lookups == [8]  # one lookup for the eight threads
        for tag in "abcdef":
            assert signature(cp.load(tag)) == signature(first[tag])
