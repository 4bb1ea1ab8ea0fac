"""Stateful tests: random sequences of checkpointer calls against a plain dict model.

One hypothesis state machine drives every backend (in memory, a DuckDB file
that is closed and reopened at random, DuckDB with batched commits and short
delta chains) through save, load, load_at, history, fork, delete, prune,
threads and reopen, in any order, and checks each answer, and each error,
against a model that is a dict of dicts. After every rule the stored threads
and their latest steps must match the model.

The number of runs follows the hypothesis profile: a few in ``dev``, more in
``ci``, many under ``soak``.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from typedflow import (
    FORK_WRITER,
    Checkpoint,
    CheckpointError,
    ConflictError,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    NodeFailure,
    NodeWrite,
    ParentRef,
    StepNotFoundError,
    StepStatus,
    ThreadNotFoundError,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import ContractState, ContractUpdate, Tag

T0 = datetime(2025, 1, 1, tzinfo=UTC)

# A small pool, so that rules often hit threads that exist, were deleted, or were forked.
ALL_IDS = ("a", "it's", "ünï 🙂", "f")
thread_ids = st.sampled_from(ALL_IDS)
steps = st.integers(min_value=-1, max_value=12)
small_ints = st.integers(min_value=-1000, max_value=1000)
words = st.text(max_size=8)
tags = st.dictionaries(st.sampled_from(["x", "y", "z"]), small_ints, max_size=3)
best = st.none() | st.builds(Tag, words, st.sampled_from([0.5, 1.0, -2.25]))
statuses: st.SearchStrategy[StepStatus] = st.sampled_from(["ok", "interrupted", "error"])
nexts = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True).map(tuple)
updates = st.builds(
    ContractUpdate,
    n=small_ints,
    items=words,
    note=st.none() | words,
    tags=tags,
    best=best,
)
node_writes = st.lists(
    st.builds(
        NodeWrite[ContractUpdate],
        node=st.sampled_from(["a", "b", "c"]),
        updates=st.lists(updates, max_size=2).map(tuple),
        duration=st.sampled_from([0.0, 0.125, 3.5]),
    ),
    max_size=2,
).map(tuple)


def scaled(divisor: int, floor: int) -> int:
    """A share of the profile's ``max_examples``: small in dev, large under soak."""
    return max(floor, settings().max_examples // divisor)


class CheckpointerMachine(RuleBasedStateMachine):
    """Drives one backend; subclasses say how to open (and reopen) it."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="typedflow-stateful-"))
        self.cp = self.open()
        self.model: dict[str, dict[int, Checkpoint[ContractState]]] = {}
        """Every stored checkpoint, by thread and step."""
        self.parents: dict[str, ParentRef | None] = {}
        """Where each stored thread was forked from."""
        self.tick = 0
        self.changed = False
        """Whether anything was written since the store was last (re)opened."""

    def open(self) -> HistoryCheckpointer[ContractState]:
        raise NotImplementedError

    def teardown(self) -> None:
        self.cp.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------

    def latest(self, tid: str) -> int:
        return max(self.model[tid])

    def state_after(self, tid: str, data: st.DataObject) -> ContractState:
        """A state that usually grows the thread's ``items`` (stored as a delta in DuckDB),
        and sometimes rewrites them (stored in full)."""
        old = self.model[tid][self.latest(tid)].state.items if self.model.get(tid) else ()
        grow = data.draw(st.booleans(), label="grow")
        extra = tuple(data.draw(st.lists(words, max_size=3), label="items"))
        return ContractState(
            n=data.draw(small_ints, label="n"),
            items=(*old, *extra) if grow else extra,
            note=data.draw(st.none() | words, label="note"),
            tags=data.draw(tags, label="tags"),
            best=data.draw(best, label="best"),
        )

    def make(self, tid: str, step: int, data: st.DataObject) -> Checkpoint[ContractState]:
        self.tick += 1
        status = data.draw(statuses, label="status")
        return Checkpoint(
            thread_id=tid,
            step=step,
            state=self.state_after(tid, data),
            next=data.draw(nexts, label="next"),
            status=status,
            writes=data.draw(node_writes, label="writes"),
            pending=data.draw(node_writes, label="pending") if status != "ok" else (),
            failures=(NodeFailure(node="a", error_type="builtins.ValueError", message="no"),)
            if status == "error"
            else (),
            reason=None if status == "ok" else "stopped",
            duration=0.5,
            created_at=T0 + timedelta(seconds=self.tick),
            metadata={"tick": self.tick, "who": tid},
        )

    # -- rules -------------------------------------------------------------------------------

    def save_next(self, tid: str, data: st.DataObject) -> None:
        """Save the thread's next step (or its first, at any step); the model follows."""
        if tid not in self.model:
            step = data.draw(st.integers(0, 5), label="first step")
            self.model[tid] = {}
            self.parents[tid] = None
        else:
            step = self.latest(tid) + 1
        cp = self.make(tid, step, data)
        self.cp.save(cp)
        self.model[tid][step] = cp
        self.changed = True
        event("thread length", min(len(self.model[tid]), 6))

    @initialize(tid=thread_ids, count=st.integers(1, 6), data=st.data())
    def start(self, tid: str, count: int, data: st.DataObject) -> None:
        for _ in range(count):
            self.save_next(tid, data)

    @rule(tid=thread_ids, count=st.integers(1, 4), data=st.data())
    def save(self, tid: str, count: int, data: st.DataObject) -> None:
        for _ in range(count):
            self.save_next(tid, data)

    @rule(tid=thread_ids, where=st.sampled_from(["same", "older", "gap"]), data=st.data())
    def save_out_of_order(self, tid: str, where: str, data: st.DataObject) -> None:
        if tid not in self.model:
            return
        latest = self.latest(tid)
        step = {"same": latest, "older": latest - 1, "gap": latest + 2}[where]
        cp = self.make(tid, step, data)
        if where == "gap":
            with pytest.raises(CheckpointError, match=f"must be step {latest + 1}"):
                self.cp.save(cp)
        else:
            with pytest.raises(ConflictError) as info:
                self.cp.save(cp)
            assert (info.value.thread_id, info.value.step, info.value.latest) == (tid, step, latest)

    @rule(tid=thread_ids)
    def load(self, tid: str) -> None:
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.load(tid)
            return
        assert self.cp.load(tid) == self.model[tid][self.latest(tid)]

    def pick(self, tid: str, step: int, existing: bool) -> int:
        """``step`` itself, or (with ``existing``) one of the thread's stored steps."""
        if existing and self.model.get(tid):
            stored = sorted(self.model[tid])
            return stored[step % len(stored)]
        return step

    @rule(tid=thread_ids, step=steps, existing=st.booleans())
    def load_at(self, tid: str, step: int, existing: bool) -> None:
        step = self.pick(tid, step, existing)
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.load_at(tid, step)
        elif step not in self.model[tid]:
            with pytest.raises(StepNotFoundError) as info:
                self.cp.load_at(tid, step)
            assert (info.value.thread_id, info.value.step) == (tid, step)
        else:
            assert self.cp.load_at(tid, step) == self.model[tid][step]

    @rule(
        tid=thread_ids,
        limit=st.none() | st.integers(0, 4),
        before=st.none() | st.integers(-1, 12),
    )
    def history(self, tid: str, limit: int | None, before: int | None) -> None:
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.history(tid, limit=limit, before=before)
            return
        expected = [
            self.model[tid][s]
            for s in sorted(self.model[tid], reverse=True)
            if before is None or s < before
        ]
        if limit is not None:
            expected = expected[:limit]
        assert self.cp.history(tid, limit=limit, before=before) == expected

    @rule(
        tid=thread_ids,
        step=steps,
        existing=st.booleans(),
        new=thread_ids,
        update=st.none() | updates,
        meta=st.none() | st.just({"forked": True}),
    )
    def fork(
        self,
        tid: str,
        step: int,
        existing: bool,
        new: str,
        update: ContractUpdate | None,
        meta: dict[str, Any] | None,
    ) -> None:
        if existing:
            # Mostly a fork that can succeed: from a stored step, into a free thread id.
            if self.model and tid not in self.model:
                tid = sorted(self.model)[step % len(self.model)]
            free = [t for t in ALL_IDS if t not in self.model]
            if free and new in self.model:
                new = free[step % len(free)]
        step = self.pick(tid, step, existing)
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.fork(tid, step, new, update=update, metadata=meta)
            return
        if step not in self.model[tid]:
            with pytest.raises(StepNotFoundError):
                self.cp.fork(tid, step, new, update=update, metadata=meta)
            return
        if new in self.model:
            with pytest.raises(ConflictError) as info:
                self.cp.fork(tid, step, new, update=update, metadata=meta)
            assert info.value.thread_id == new
            return
        origin = self.model[tid][step]
        forked = self.cp.fork(tid, step, new, update=update, metadata=meta)
        assert (forked.thread_id, forked.step, forked.next) == (new, step, origin.next)
        assert forked.parent == ParentRef(thread_id=tid, step=step)
        assert forked.metadata == (meta if meta is not None else origin.metadata)
        if update is None:
            assert forked.state == origin.state
            assert (forked.status, forked.pending, forked.failures, forked.reason) == (
                origin.status,
                origin.pending,
                origin.failures,
                origin.reason,
            )
            assert forked.writes == ()
        else:
            assert forked.state == origin.state.apply(update)
            assert [(w.node, w.updates) for w in forked.writes] == [(FORK_WRITER, (update,))]
            assert (forked.status, forked.pending) == ("ok", ())
        self.model[new] = {step: forked}
        self.changed = True
        event("fork", "with an update" if update is not None else "as is")
        self.parents[new] = forked.parent

    @rule(tid=thread_ids)
    def delete(self, tid: str) -> None:
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.delete(tid)
            return
        self.cp.delete(tid)
        del self.model[tid]
        del self.parents[tid]
        self.changed = True

    @rule(tid=thread_ids, keep=st.integers(0, 4))
    def prune(self, tid: str, keep: int) -> None:
        if tid not in self.model:
            with pytest.raises(ThreadNotFoundError):
                self.cp.prune(tid, keep=max(keep, 1))
            return
        if keep == 0:
            with pytest.raises(ValueError, match="keep"):
                self.cp.prune(tid, keep=0)
            return
        kept = sorted(self.model[tid])[-keep:]
        gone = len(self.model[tid]) - len(kept)
        assert self.cp.prune(tid, keep=keep) == gone
        event("prune", "removed steps" if gone else "removed nothing")
        self.model[tid] = {s: self.model[tid][s] for s in kept}
        self.changed = True

    @rule()
    def threads(self) -> None:
        infos = self.cp.threads()
        assert sorted(i.thread_id for i in infos) == sorted(self.model)
        created = [i.created_at for i in infos]
        assert created == sorted(created), "threads() lists the oldest first"
        for info in infos:
            latest = self.model[info.thread_id][self.latest(info.thread_id)]
            assert (info.latest_step, info.status, info.done) == (
                latest.step,
                latest.status,
                latest.done,
            )
            assert info.parent == self.parents[info.thread_id]
            assert info.schema_name == "ContractState"

    @precondition(lambda self: self.changed)
    @rule()
    def reopen(self) -> None:
        self.cp = self.reopened()
        self.changed = False

    def reopened(self) -> HistoryCheckpointer[ContractState]:
        return self.cp  # in memory there is nothing to reopen

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def latest_steps_match(self) -> None:
        stored = {i.thread_id: i.latest_step for i in self.cp.threads()}
        assert stored == {tid: self.latest(tid) for tid in self.model}


class InMemoryMachine(CheckpointerMachine):
    def open(self) -> HistoryCheckpointer[ContractState]:
        return InMemoryCheckpointer(ContractState)


class DuckDBFileMachine(CheckpointerMachine):
    """Short delta chains, so that saves, prunes and loads cross full rows often."""

    def open(self) -> HistoryCheckpointer[ContractState]:
        return DuckDBCheckpointer(ContractState, self.dir / "s.duckdb", snapshot_every=3)

    def reopened(self) -> HistoryCheckpointer[ContractState]:
        self.cp.close()
        return self.open()


class DuckDBBatchedMachine(CheckpointerMachine):
    def open(self) -> HistoryCheckpointer[ContractState]:
        return DuckDBCheckpointer(
            ContractState, self.dir / "b.duckdb", durability="batch", batch_size=3, snapshot_every=4
        )

    def reopened(self) -> HistoryCheckpointer[ContractState]:
        self.cp.close()
        return self.open()


def machine_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=100 if settings().max_examples >= 1000 else 30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


InMemoryMachine.TestCase.settings = machine_settings(scaled(4, 25))
DuckDBFileMachine.TestCase.settings = machine_settings(scaled(10, 8))
DuckDBBatchedMachine.TestCase.settings = machine_settings(scaled(10, 8))

TestInMemory = InMemoryMachine.TestCase
TestDuckDBFile = DuckDBFileMachine.TestCase
TestDuckDBBatched = DuckDBBatchedMachine.TestCase
