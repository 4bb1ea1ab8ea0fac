"""The checkpoint contract suite, for typedflow's backends and for yours.

Every backend runs the same tests. To check your own backend, subclass
:class:`CheckpointerContract` in a pytest module and say how to make (and
reopen) your checkpointer::

    from pathlib import Path

    from typedflow import HistoryCheckpointer
    from typedflow.testing import CheckpointerContract, ContractState

    class TestMyBackend(CheckpointerContract):
        def make_checkpointer(
            self, schema: type[ContractState], tmp_path: Path
        ) -> HistoryCheckpointer[ContractState]:
            return MyCheckpointer(schema, tmp_path / "store")

        def reopen(
            self,
            checkpointer: HistoryCheckpointer[ContractState],
            schema: type[ContractState],
            tmp_path: Path,
        ) -> HistoryCheckpointer[ContractState]:
            checkpointer.close()
            return MyCheckpointer(schema, tmp_path / "store")

The suite needs pytest; importing :mod:`typedflow` does not import it.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from typedflow.checkpoint.base import (
    FORK_WRITER,
    Checkpoint,
    HistoryCheckpointer,
    NodeFailure,
    NodeWrite,
    ParentRef,
)
from typedflow.errors import (
    CheckpointError,
    ConflictError,
    ReducerError,
    StepNotFoundError,
    ThreadNotFoundError,
    UpdateTypeError,
)
from typedflow.nodes import END, Goto
from typedflow.reducers import add, append, merge
from typedflow.runner import Completed, Interrupted, Runner
from typedflow.schema import UNSET, StateSchema, Unset, field

__all__ = ["CheckpointerContract", "ContractState", "ContractUpdate", "Tag"]


@attrs.frozen
class Tag:
    """A nested value, stored as a structure."""

    name: str
    """The tag's name."""
    weight: float = 1.0
    """Its weight."""


@attrs.frozen
class ContractUpdate:
    """The update type of :class:`ContractState`; unset fields change nothing."""

    n: int | Unset = UNSET
    """Added to ``n``."""
    items: str | Unset = UNSET
    """Appended to ``items``."""
    note: str | Unset | None = UNSET
    """Replaces ``note``."""
    tags: dict[str, int] | Unset = UNSET
    """Merged into ``tags``."""
    best: Tag | Unset | None = UNSET
    """Replaces ``best``."""


@attrs.frozen
class ContractState(StateSchema[ContractUpdate]):
    """A state with scalars, a growing tuple, an optional, a mapping and a nested class."""

    n: int = field(default=0, reducer=add)
    """A counter."""
    items: tuple[str, ...] = field(default=(), reducer=append)
    """A growing list of strings."""
    note: str | None = None
    """An optional note."""
    tags: dict[str, int] = field(factory=dict, reducer=merge)
    """A mapping."""
    best: Tag | None = None
    """A nested attrs value."""
    when: datetime = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    """A timestamp."""


_T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def make_checkpoint(
    thread_id: str,
    step: int,
    *,
    n: int = 0,
    next: tuple[str, ...] = ("a",),
    **kwargs: Any,
) -> Checkpoint[ContractState]:
    """A checkpoint of :class:`ContractState` with distinctive field values."""
    state = ContractState(
        n=n,
        items=tuple(f"item {i}" for i in range(step)),
        note=None if step % 2 else f"note {step}",
        tags={"step": step},
        best=Tag(f"t{step}", 0.5) if step % 3 else None,
    )
    fields: dict[str, Any] = {
        "thread_id": thread_id,
        "step": step,
        "state": state,
        "next": next,
        "created_at": _T0 + timedelta(seconds=step),
        "writes": (
            NodeWrite(
                node="a", updates=(ContractUpdate(n=1, items=f"item {step}"),), duration=0.25
            ),
        )
        if step
        else (),
        "duration": 0.5,
        "metadata": {"run": "contract", "attempt": 1, "ratio": 0.5, "ok": True, "none": None},
    }
    fields.update(kwargs)
    return Checkpoint(**fields)


class CheckpointerContract(ABC):
    """The contract every ``HistoryCheckpointer`` passes; subclass it as ``Test...``."""

    @abstractmethod
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        """Make an empty checkpointer for ``schema`` (storage under ``tmp_path``)."""

    def reopen(
        self,
        checkpointer: HistoryCheckpointer[ContractState],
        schema: type[ContractState],
        tmp_path: Path,
    ) -> HistoryCheckpointer[ContractState]:
        """Close and reopen the same storage; in-memory backends return the same object."""
        return checkpointer

    @pytest.fixture
    def cp(self, tmp_path: Path) -> Iterator[HistoryCheckpointer[ContractState]]:
        """A fresh checkpointer, closed after the test."""
        checkpointer = self.make_checkpointer(ContractState, tmp_path)
        yield checkpointer
        checkpointer.close()

    # -- save and load -----------------------------------------------------------------------

    def test_round_trip_every_field(self, cp: HistoryCheckpointer[ContractState]) -> None:
        first = make_checkpoint("t", 0)
        second = make_checkpoint(
            "t",
            1,
            n=5,
            status="error",
            pending=(
                NodeWrite(
                    node="b", updates=(ContractUpdate(note=None, tags={"x": 1}),), goto=("c", END)
                ),
            ),
            failures=(
                NodeFailure(
                    node="c",
                    error_type="builtins.ValueError",
                    message="bad 'input'",
                    duration=0.125,
                ),
            ),
            reason="node 'c' failed",
        )
        cp.save(first)
        cp.save(second)
        assert cp.load("t") == second
        assert cp.load_at("t", 0) == first
        assert cp.load_at("t", 1).pending[0].updates[0].note is None

    def test_update_fields_keep_unset_apart_from_none(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        update = ContractUpdate(note=None, best=Tag("x"))
        cp.save(
            make_checkpoint(
                "t", 0, writes=(NodeWrite(node="a", updates=(update, ContractUpdate())),)
            )
        )
        loaded = cp.load("t").writes[0].updates
        assert loaded == (update, ContractUpdate())
        assert loaded[0].n is UNSET
        assert loaded[0].note is None

    def test_unknown_thread(self, cp: HistoryCheckpointer[ContractState]) -> None:
        with pytest.raises(ThreadNotFoundError) as info:
            cp.load("nope")
        assert info.value.thread_id == "nope"
        for call in (
            lambda: cp.load_at("nope", 0),
            lambda: cp.history("nope"),
            lambda: cp.delete("nope"),
            lambda: cp.prune("nope", keep=1),
        ):
            with pytest.raises(ThreadNotFoundError):
                call()

    def test_unknown_step(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("t", 0))
        with pytest.raises(StepNotFoundError) as info:
            cp.load_at("t", 7)
        assert (info.value.thread_id, info.value.step) == ("t", 7)
        with pytest.raises(StepNotFoundError):
            cp.load_at("t", -1)

    def test_wrong_schema_stores_nothing(self, cp: HistoryCheckpointer[ContractState]) -> None:
        bad = attrs.evolve(make_checkpoint("t", 0), state=Tag("not a state"))  # type: ignore[arg-type]  # the runtime check is under test
        with pytest.raises(CheckpointError):
            cp.save(bad)
        with pytest.raises(ThreadNotFoundError):
            cp.load("t")

    # -- linear history ----------------------------------------------------------------------

    def test_same_step_twice_conflicts(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("t", 0))
        cp.save(make_checkpoint("t", 1, n=1))
        with pytest.raises(ConflictError) as info:
            cp.save(make_checkpoint("t", 1, n=99))
        assert (info.value.thread_id, info.value.step, info.value.latest) == ("t", 1, 1)
        with pytest.raises(ConflictError):
            cp.save(make_checkpoint("t", 0, n=99))
        assert cp.load("t").state.n == 1
        assert [c.step for c in cp.history("t")] == [1, 0]

    def test_gap_is_refused(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("t", 0))
        with pytest.raises(CheckpointError):
            cp.save(make_checkpoint("t", 2))
        assert cp.load("t").step == 0

    def test_fork_checkpoint_cannot_join_existing_thread(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        cp.save(make_checkpoint("t", 0))
        with pytest.raises(ConflictError):
            cp.save(make_checkpoint("t", 1, parent=ParentRef(thread_id="x", step=0)))

    def test_first_checkpoint_may_start_at_any_step(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        cp.save(make_checkpoint("f", 4, parent=ParentRef(thread_id="o", step=4)))
        cp.save(make_checkpoint("f", 5))
        assert [c.step for c in cp.history("f")] == [5, 4]
        assert cp.load_at("f", 4).parent == ParentRef(thread_id="o", step=4)

    # -- history -----------------------------------------------------------------------------

    def test_history_newest_first_with_limit_and_before(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        for step in range(6):
            cp.save(make_checkpoint("t", step, n=step))
        assert [c.step for c in cp.history("t")] == [5, 4, 3, 2, 1, 0]
        assert [c.step for c in cp.history("t", limit=2)] == [5, 4]
        assert [c.step for c in cp.history("t", before=3)] == [2, 1, 0]
        assert [c.step for c in cp.history("t", before=3, limit=1)] == [2]
        assert cp.history("t", limit=0) == []
        assert cp.history("t", before=0) == []
        assert [c.state.n for c in cp.history("t")] == [5, 4, 3, 2, 1, 0]

    def test_threads(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("a", 0))
        cp.save(make_checkpoint("a", 1, next=()))
        cp.save(make_checkpoint("b", 0, created_at=_T0 + timedelta(hours=1), status="interrupted"))
        infos = {t.thread_id: t for t in cp.threads()}
        assert set(infos) == {"a", "b"}
        assert [t.thread_id for t in cp.threads()] == ["a", "b"]
        a = infos["a"]
        assert (a.latest_step, a.status, a.done, a.parent) == (1, "ok", True, None)
        assert a.schema_name == ContractState.__qualname__
        assert a.schema_version == ContractState.schema_version
        assert a.created_at == _T0
        b = infos["b"]
        assert (b.latest_step, b.status, b.done) == (0, "interrupted", False)

    # -- fork, delete, prune -----------------------------------------------------------------

    def test_fork_copies_and_stays_independent(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        for step in range(4):
            cp.save(make_checkpoint("o", step, n=step))
        before = cp.history("o")
        forked = cp.fork("o", 2, "f")
        assert forked.parent == ParentRef(thread_id="o", step=2)
        assert (forked.thread_id, forked.step, forked.state, forked.next) == (
            "f",
            2,
            cp.load_at("o", 2).state,
            ("a",),
        )
        cp.save(make_checkpoint("f", 3, n=100))
        cp.save(make_checkpoint("o", 4, n=4))
        assert cp.history("o")[1:] == before
        assert [c.state.n for c in cp.history("f")] == [100, 2]
        info = {t.thread_id: t for t in cp.threads()}["f"]
        assert info.parent == ParentRef(thread_id="o", step=2)

    def test_fork_with_update_goes_through_the_reducer(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        cp.save(make_checkpoint("o", 0, n=3))
        forked = cp.fork(
            "o", 0, "f", update=ContractUpdate(n=10, items="forked"), metadata={"why": "test"}
        )
        assert forked.state.n == 13
        assert forked.state.items[-1] == "forked"
        assert forked.writes[0].node == FORK_WRITER
        assert forked.metadata == {"why": "test"}
        assert cp.load("f") == forked
        assert cp.load("o").state.n == 3

    def test_fork_errors(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("o", 0))
        cp.save(make_checkpoint("x", 0))
        with pytest.raises(ConflictError):
            cp.fork("o", 0, "x")
        with pytest.raises(StepNotFoundError):
            cp.fork("o", 5, "y")
        with pytest.raises(ThreadNotFoundError):
            cp.fork("nope", 0, "y")
        with pytest.raises(UpdateTypeError):
            cp.fork("o", 0, "y", update="not an update")  # type: ignore[arg-type]  # the runtime check is under test
        with pytest.raises(ReducerError):
            cp.fork("o", 0, "y", update=ContractUpdate(n="x"))  # type: ignore[arg-type]  # a reducer that fails
        assert {t.thread_id for t in cp.threads()} == {"o", "x"}

    def test_delete(self, cp: HistoryCheckpointer[ContractState]) -> None:
        cp.save(make_checkpoint("o", 0))
        cp.save(make_checkpoint("o", 1))
        cp.fork("o", 1, "f")
        cp.delete("o")
        with pytest.raises(ThreadNotFoundError):
            cp.load("o")
        assert [t.thread_id for t in cp.threads()] == ["f"]
        assert cp.load("f").step == 1
        cp.save(make_checkpoint("o", 0, n=9))
        assert cp.load("o").state.n == 9

    def test_prune(self, cp: HistoryCheckpointer[ContractState]) -> None:
        for step in range(5):
            cp.save(make_checkpoint("t", step, n=step))
        cp.save(make_checkpoint("other", 0))
        assert cp.prune("t", keep=2) == 3
        assert [c.step for c in cp.history("t")] == [4, 3]
        with pytest.raises(StepNotFoundError):
            cp.load_at("t", 1)
        assert cp.prune("t", keep=2) == 0
        with pytest.raises(ValueError, match="keep"):
            cp.prune("t", keep=0)
        cp.save(make_checkpoint("t", 5, n=5))
        assert [c.step for c in cp.history("t")] == [5, 4, 3]
        assert cp.load("other").step == 0
        with pytest.raises(ConflictError):
            cp.save(make_checkpoint("t", 2))

    # -- durability --------------------------------------------------------------------------

    def test_reopen_keeps_everything(
        self, cp: HistoryCheckpointer[ContractState], tmp_path: Path
    ) -> None:
        for step in range(3):
            cp.save(make_checkpoint("t", step, n=step))
        cp.fork("t", 1, "f", update=ContractUpdate(n=1))
        saved = {t: cp.history(t) for t in ("t", "f")}
        again = self.reopen(cp, ContractState, tmp_path)
        try:
            assert {t: again.history(t) for t in ("t", "f")} == saved
            again.save(make_checkpoint("t", 3, n=3))
            assert again.load("t").step == 3
        finally:
            if again is not cp:
                again.close()

    # -- awkward thread ids ------------------------------------------------------------------

    @pytest.mark.parametrize(
        "thread_id",
        [
            "it's",
            'say "hi"',
            "a; DROP TABLE checkpoints; --",
            "naïve 漢字 🙂",
            "x" * 10_000,
            "%s ? $1 :name",
            " ",
        ],
    )
    def test_thread_ids_are_stored_exactly(
        self, cp: HistoryCheckpointer[ContractState], thread_id: str
    ) -> None:
        cp.save(make_checkpoint(thread_id, 0))
        cp.save(make_checkpoint(thread_id, 1, n=1))
        cp.save(make_checkpoint("plain", 0))
        assert cp.load(thread_id).thread_id == thread_id
        assert [c.step for c in cp.history(thread_id)] == [1, 0]
        assert thread_id in {t.thread_id for t in cp.threads()}
        cp.delete(thread_id)
        assert [t.thread_id for t in cp.threads()] == ["plain"]

    # -- concurrency -------------------------------------------------------------------------

    def test_threads_write_concurrently(self, cp: HistoryCheckpointer[ContractState]) -> None:
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                for step in range(20):
                    cp.save(make_checkpoint(f"w{i}", step, n=step))
            except BaseException as exc:  # noqa: BLE001  # collected; the test asserts none
                errors.append(exc)

        workers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        for i in range(8):
            assert [c.state.n for c in cp.history(f"w{i}")] == list(range(19, -1, -1))

    def test_racing_writers_never_fork_history(
        self, cp: HistoryCheckpointer[ContractState]
    ) -> None:
        cp.save(make_checkpoint("t", 0))
        barrier = threading.Barrier(4)
        outcomes: list[str] = []
        lock = threading.Lock()

        def write(i: int) -> None:
            barrier.wait()
            try:
                cp.save(make_checkpoint("t", 1, n=i))
                result = f"won {i}"
            except ConflictError:
                result = "conflict"
            with lock:
                outcomes.append(result)

        workers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        winners = [o for o in outcomes if o.startswith("won")]
        assert len(winners) == 1
        assert outcomes.count("conflict") == 3
        assert cp.load("t").state.n == int(winners[0].split()[1])
        assert [c.step for c in cp.history("t")] == [1, 0]

    def test_asyncio_tasks_share_it(self, cp: HistoryCheckpointer[ContractState]) -> None:
        async def write(i: int) -> None:
            for step in range(10):
                await cp.asave(make_checkpoint(f"a{i}", step, n=step))

        async def main() -> None:
            await asyncio.gather(*(write(i) for i in range(16)))

        asyncio.run(main())
        assert all(cp.load(f"a{i}").step == 9 for i in range(16))

    # -- a runner on top ---------------------------------------------------------------------

    def test_runner_end_to_end(self, cp: HistoryCheckpointer[ContractState]) -> None:
        @ContractState.node
        def count(state: ContractState) -> ContractUpdate:
            return ContractUpdate(n=1, items=f"seen {state.n}", tags={f"k{state.n}": state.n})

        @ContractState.node
        def review(state: ContractState) -> Goto[ContractUpdate]:
            return Goto(
                END if state.note == "approved" else "count", update=ContractUpdate(best=Tag("r"))
            )

        runner = Runner(
            ContractState,
            nodes=[count, review],
            entry="count",
            routes={"count": lambda s: "review" if s.n >= 3 else "count"},
            interrupt_before=["review"],
            checkpointer=cp,
        )
        first = runner.invoke(ContractState(), thread_id="run", metadata={"user": "u1"})
        assert isinstance(first, Interrupted)
        assert first.checkpoint == cp.load("run")
        done = runner.resume("run", update=ContractUpdate(note="approved"))
        assert isinstance(done, Completed)
        assert done.state.n == 3
        assert done.state.items == ("seen 0", "seen 1", "seen 2")
        assert done.state.best == Tag("r")
        assert cp.load("run") == done.checkpoint
        steps = [c.step for c in cp.history("run")]
        assert steps == list(range(steps[0], -1, -1))
        forked = runner.resume("run", from_step=2, as_thread="run-2")
        assert isinstance(forked, Interrupted)
        assert cp.load_at("run-2", 2).parent == ParentRef(thread_id="run", step=2)
        assert cp.load("run") == done.checkpoint
