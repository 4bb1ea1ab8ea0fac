"""Crash safety: a run on a DuckDB file is killed with SIGKILL at random moments, again and again.

A child process (``tests/crash_child.py``) runs a long deterministic workflow
and reports each save on a pipe; the test kills it inside a commit (right after
it reports ``committing``), inside a node (right after ``saved``, while the next
step's nodes sleep), or at a random time (while it starts, opens the file, runs
or commits). After each kill the test reopens the file and checks that every
stored step is whole and equal to the same step of an uninterrupted run, that
nothing committed was lost, and then lets a new child (killed again, maybe) or
the test itself resume the run to the end, which must equal the uninterrupted
run. The tests run for a time budget, not a fixed count: set
``TYPEDFLOW_SOAK=1`` for the long soak (``TYPEDFLOW_SOAK_SECONDS``, default
600), and ``TYPEDFLOW_CRASH_SEED`` to replay the choices of an earlier run.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from tests.crash_child import Soak, signature, soak_runner
from tests.crash_child import reference as reference_run
from typedflow import Checkpoint, Completed, ThreadNotFoundError
from typedflow.checkpoint.duckdb import DuckDBCheckpointer, Durability

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is a POSIX signal")

ROOT = Path(__file__).resolve().parents[1]
GOAL = 450
"""The workflow's goal: about 300 steps, 55 of them with two nodes running in parallel."""
BATCH = 16
"""The batch size of the ``"batch"`` durability runs."""
PAUSE = 0.003
"""The longest sleep of a node in the child."""
MIN_KILLS = 10
"""Every test kills at least this many children, whatever its time budget."""
SOAK = os.environ.get("TYPEDFLOW_SOAK") == "1"
SOAK_SECONDS = float(os.environ.get("TYPEDFLOW_SOAK_SECONDS", "600"))
THREADS_PER_FILE = 8
"""A new file every this many runs, so that reopening stays cheap in a long soak."""


def reference(tag: str) -> tuple[Checkpoint[Soak], ...]:
    """The checkpoints of an uninterrupted run of thread ``tag``, by step."""
    return reference_run(tag, GOAL)


@attrs.define
class Events:
    """What a child reported on its pipe."""

    lines: list[tuple[str, int, float]] = attrs.Factory(list)
    """Each report: the event, its step and when it was made (``time.monotonic()``)."""

    def last(self, event: str) -> int:
        """The highest step reported with ``event``, or -1."""
        return max((s for e, s, _ in self.lines if e == event), default=-1)

    def commit_times(self) -> list[float]:
        """How long each commit took, from ``committing`` to the ``committed`` of its step."""
        out = []
        started: dict[int, float] = {}
        for event, step, when in self.lines:
            if event == "committing":
                started[step] = when
            elif event == "committed" and step in started:
                out.append(when - started.pop(step))
        return out

    @property
    def killed_in_commit(self) -> bool:
        """True when the child died inside a commit (its last report is ``committing``)."""
        return bool(self.lines) and self.lines[-1][0] == "committing"


@attrs.define
class Child:
    """A child process running the workflow on a file; killed or left to finish."""

    proc: subprocess.Popen[bytes]
    stderr: Path
    events: Events = attrs.Factory(Events)
    _pending: bytes = b""

    @classmethod
    def start(
        cls, path: Path, thread: str, durability: Durability, seed: int, errors: Path
    ) -> Child:
        args = [str(path), thread, durability, str(seed), str(PAUSE), str(GOAL), str(BATCH)]
        with errors.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_child", *args],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        return cls(proc, errors)

    def wait_for(self, event: str, step: int) -> float | None:
        """Read the pipe until the child reports ``event`` at ``step`` or later, and return
        when it did (``time.monotonic()``); None when the child ended first."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return None
            self._take(line)
            name, at, when = self.events.lines[-1]
            if name == event and at >= step:
                return when

    def _take(self, data: bytes) -> None:
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        for raw in complete:
            name, step, when = raw.decode().split()
            self.events.lines.append((name, int(step), float(when)))

    def kill(self) -> bool:
        """SIGKILL the child and read what it reported; True when it was still running."""
        self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def finish(self) -> bool:
        """Wait for the child to end; True when SIGKILL ended it, and fail if it failed."""
        assert self.proc.stdout is not None
        self._take(self.proc.stdout.read())
        self.proc.stdout.close()
        code = self.proc.wait(timeout=60)
        if code not in (0, -signal.SIGKILL):
            raise AssertionError(f"the child failed ({code}):\n{self.stderr.read_text()}")
        return code == -signal.SIGKILL


@attrs.define
class Figures:
    """What a crash test did and found."""

    durability: Durability
    seed: int
    kills: int = 0
    kills_in_commit: int = 0
    runs_finished: int = 0
    finished_by_parent: int = 0
    lost: int = 0
    """Steps a child reported committed that were not stored after the kill."""
    unflushed: int = 0
    """Steps a child reported saved, but not committed, that were not stored (``"batch"``)."""
    most_unflushed: int = 0
    partial: int = 0
    """Stored steps that differ from the reference, missing steps, orphan update rows."""
    problems: list[str] = attrs.Factory(list)

    def line(self) -> str:
        return (
            f"crash test ({self.durability}): {self.kills} kills survived "
            f"({self.kills_in_commit} inside a commit), {self.runs_finished} runs resumed to "
            f"the end ({self.finished_by_parent} by the test itself), {self.lost} rows lost, "
            f"{self.partial} partial steps, {self.unflushed} uncommitted steps lost "
            f"(at most {self.most_unflushed} per kill); seed {self.seed}"
        )


@attrs.define
class Marks:
    """What the children of one thread reported, over all of them."""

    floor: int = -1
    """The highest step reported committed: it must be stored."""
    ceiling: int = -1
    """The highest step handed to ``save``: nothing later can be stored."""

    def take(self, events: Events) -> None:
        self.floor = max(self.floor, events.last("committed"))
        self.ceiling = max(self.ceiling, events.last("saving"))


def check_store(
    path: Path, thread: str, durability: Durability, marks: Marks, events: Events, fig: Figures
) -> int:
    """Reopen the file after a child ended and check the thread; return its latest step.

    Every stored step must be whole and equal to the reference, every committed
    step stored (``marks``), and with ``"step"`` durability every step the last
    child saved (``events``).
    """
    ref = reference(thread)
    with DuckDBCheckpointer(Soak, path) as cp:
        try:
            latest: int = cp.load(thread).step
        except ThreadNotFoundError:
            latest = -1
        history = list(reversed(cp.history(thread))) if latest >= 0 else []
        orphans = cp.connection.execute(
            "SELECT count(*) FROM soak_updates u WHERE NOT EXISTS (SELECT 1 FROM "
            "soak_checkpoints c WHERE c.thread_id = u.thread_id AND c.step = u.step)"
        ).fetchone()
    problems = []
    if latest < marks.floor:
        fig.lost += marks.floor - latest
        problems.append(f"step {marks.floor} was reported committed; the latest stored: {latest}")
    if latest > marks.ceiling:
        problems.append(f"step {latest} is stored but was never saved")
    unflushed = max(0, events.last("saved") - max(latest, marks.floor))
    if durability == "step" and unflushed:
        problems.append(f"{unflushed} steps whose save returned are lost")
    if unflushed >= BATCH:
        problems.append(f"{unflushed} saved steps lost; the loss window is below {BATCH}")
    fig.unflushed += unflushed
    fig.most_unflushed = max(fig.most_unflushed, unflushed)
    steps = [c.step for c in history]
    bad = [c.step for c in history if c.step >= len(ref) or signature(c) != signature(ref[c.step])]
    if steps != list(range(latest + 1)) or bad or orphans != (0,):
        fig.partial += len(bad) + abs(len(steps) - (latest + 1)) + (orphans or (0,))[0]
        problems.append(f"history {steps[:3]}..{steps[-3:]}, differing {bad}, orphans {orphans}")
    fig.problems += [f"{thread}: {p}" for p in problems]
    return latest


def finish_in_parent(path: Path, thread: str, durability: Durability) -> None:
    """Resume (or start) the thread in this process and run it to the end."""
    with DuckDBCheckpointer(Soak, path, durability=durability, batch_size=BATCH) as cp:
        runner = soak_runner(cp)
        try:
            cp.load(thread)
        except ThreadNotFoundError:
            result = runner.invoke(Soak(tag=thread, goal=GOAL), thread_id=thread)
        else:
            result = runner.resume(thread)
    assert isinstance(result, Completed)


def kill_at_random(
    child: Child, rng: random.Random, latest: int, last: int, commit_time: float
) -> bool:
    """Kill the child at a random moment; True when it was still running.

    ``commit_time`` is how long a commit takes (measured on earlier children).
    """
    try:
        return _kill_at_random(child, rng, latest, last, commit_time)
    except BaseException:
        child.proc.kill()  # a failing test leaves no child behind
        child.proc.wait(timeout=60)
        raise


def _kill_at_random(
    child: Child, rng: random.Random, latest: int, last: int, commit_time: float
) -> bool:
    how = rng.random()
    # Mostly soon, so that each run is killed several times on its way to the end.
    ahead = rng.randint(0, 40) if rng.random() < 0.8 else rng.randint(0, last)
    target = min(latest + 1 + ahead, last)
    if how < 0.4:  # inside a commit: the child reports ``committing`` just before it
        at = child.wait_for("committing", target)
        window = 1.2 * commit_time
    elif how < 0.8:  # inside a node: the next step's nodes run right after ``saved``
        at = child.wait_for("saved", target)
        window = PAUSE
    else:  # any time: starting up, opening the file, creating tables, running
        at, window = time.monotonic(), 1.2
    if at is not None:
        time.sleep(max(0.0, at + rng.uniform(0, window) - time.monotonic()))
    return child.kill()


def crash_loop(tmp: Path, durability: Durability, budget: float) -> Figures:
    """Kill, check and resume runs until the time budget is used (and MIN_KILLS reached)."""
    seed = int(os.environ.get("TYPEDFLOW_CRASH_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    fig = Figures(durability, seed)
    deadline = time.monotonic() + budget
    run = 0
    path = tmp / "crash-0.duckdb"
    thread, latest, marks = "run-0", -1, Marks()
    attempts = 0
    commit_times = [0.005]
    while (time.monotonic() < deadline or fig.kills < MIN_KILLS) and not fig.problems:
        attempts += 1
        assert attempts <= 3 * fig.kills + 50, "the children keep finishing before the kill"
        last = len(reference(thread)) - 1
        child = Child.start(path, thread, durability, rng.randrange(2**32), tmp / "stderr.txt")
        killed = kill_at_random(child, rng, latest, last, statistics.median(commit_times))
        fig.kills += killed
        fig.kills_in_commit += killed and child.events.killed_in_commit
        marks.take(child.events)
        commit_times = (commit_times + child.events.commit_times())[-200:]
        latest = check_store(path, thread, durability, marks, child.events, fig)
        finished = latest == last
        if not finished and rng.random() < 0.05:
            finish_in_parent(path, thread, durability)
            fig.finished_by_parent += 1
            finished = True
        if finished:
            check_finished(path, thread, durability, fig)
            run += 1
            path = tmp / f"crash-{run // THREADS_PER_FILE}.duckdb"
            thread, latest, marks = f"run-{run}", -1, Marks()
    if latest >= 0 and not fig.problems:
        finish_in_parent(path, thread, durability)
        fig.finished_by_parent += 1
        check_finished(path, thread, durability, fig)
    return fig


def check_finished(path: Path, thread: str, durability: Durability, fig: Figures) -> None:
    """A thread run to the end: its whole history equals the uninterrupted run."""
    last = len(reference(thread)) - 1
    done = check_store(path, thread, durability, Marks(last, last), Events(), fig)
    if done == last:
        fig.runs_finished += 1
    else:
        fig.problems.append(f"{thread}: finished at step {done}, not {last}")


def run_crash_test(
    durability: Durability,
    budget: float,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    fig = crash_loop(tmp_path, durability, budget)
    print(fig.line())
    record_property("crash_figures", fig.line())
    assert fig.problems == [], "\n".join(fig.problems)
    assert (fig.lost, fig.partial) == (0, 0)
    if durability == "step":
        assert fig.unflushed == 0
    assert fig.kills >= MIN_KILLS
    assert fig.runs_finished >= 1


@pytest.mark.parametrize(("durability", "budget"), [("step", 15.0), ("batch", 7.0)])
def test_kill_9_at_random_moments(
    durability: Durability,
    budget: float,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    run_crash_test(durability, budget, tmp_path, record_property)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the long soak runs with TYPEDFLOW_SOAK=1")
@pytest.mark.parametrize("durability", ["step", "batch"])
def test_kill_9_soak(
    durability: Durability, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    run_crash_test(durability, SOAK_SECONDS / 2, tmp_path, record_property)
