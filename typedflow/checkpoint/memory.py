"""The in-memory backend: the reference implementation of the checkpoint contract."""

from __future__ import annotations

import copy
import threading
import typing
from typing import Any

import attrs

from typedflow._serde import is_immutable_type
from typedflow._typing import S
from typedflow.checkpoint.base import (
    Checkpoint,
    HistoryCheckpointer,
    ThreadInfo,
    check_thread_id,
)
from typedflow.errors import CheckpointError, ConflictError, StepNotFoundError, ThreadNotFoundError
from typedflow.schema import schema_info

__all__ = ["InMemoryCheckpointer"]


@attrs.define
class _Thread:
    first: int
    """The step of ``items[0]`` (moves up when old steps are pruned)."""
    items: list[Checkpoint[Any]]
    """The stored checkpoints, oldest first, one per step from ``first`` on."""
    created: Checkpoint[Any]
    """The thread's first checkpoint ever (for its creation time, parent and schema version)."""
    schema_version: int
    """The schema version when the thread was created."""

    def info(self, schema_name: str) -> ThreadInfo:
        latest = self.items[-1]
        return ThreadInfo(
            thread_id=latest.thread_id,
            schema_name=schema_name,
            schema_version=self.schema_version,
            created_at=self.created.created_at,
            latest_step=latest.step,
            status=latest.status,
            done=latest.done,
            parent=self.created.parent,
        )


class InMemoryCheckpointer(HistoryCheckpointer[S], checks_thread_ids=True):
    """Keeps every checkpoint of every thread in memory, for tests and short-lived runs.

    States and updates made only of immutable values (frozen attrs classes,
    tuples, frozensets, scalars) are shared, not copied, so saving costs the
    same however large the state grows. Other values (lists, dicts) are deep
    copied on save and on load, so a saved checkpoint never changes; the
    fields of a state whose types are immutable are shared even then, so a
    copy costs what the mutable fields hold, not what the whole state holds.
    """

    def __init__(self, schema: type[S]) -> None:
        info = schema_info(schema)
        self._schema = schema
        self._share_updates = is_immutable_type(info.update_type)
        # The state fields whose values copies share, because their types are immutable.
        self._shared_fields: tuple[str, ...]
        if is_immutable_type(schema):
            self._copy = not self._share_updates
            self._shared_fields = tuple(info.field_names)
        else:
            self._copy = True
            hints = typing.get_type_hints(schema)
            self._shared_fields = tuple(
                a.name
                for a in attrs.fields(schema)  # type: ignore[arg-type]  # schema_info() checked it is an attrs class
                if is_immutable_type(hints.get(a.name, a.type))
            )
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()

    @property
    def schema(self) -> type[S]:
        return self._schema

    def _out(self, cp: Checkpoint[S]) -> Checkpoint[S]:
        return self._copied(cp) if self._copy else cp

    def _copied(self, cp: Checkpoint[S]) -> Checkpoint[S]:
        """A deep copy of ``cp`` that shares every part known to be immutable."""
        # deepcopy returns what its memo already holds for an object, as is: seeding the memo
        # with the immutable parts keeps the copy from walking them (a state's growing tuple
        # of messages would otherwise be walked at every save and load).
        state = cp.state
        shared: list[object] = [getattr(state, name) for name in self._shared_fields]
        shared += (cp.thread_id, cp.next, cp.failures, cp.created_at, cp.parent, cp.metadata)
        if self._share_updates:
            shared += (cp.writes, cp.pending)
        return copy.deepcopy(cp, {id(value): value for value in shared})

    def _get(self, thread_id: str) -> _Thread:
        thread = self._threads.get(thread_id)
        if thread is None:
            # Checked only here: a thread that is found has a str id, as save() checks it.
            check_thread_id("thread_id", thread_id)
            raise ThreadNotFoundError(thread_id)
        return thread

    def save(self, checkpoint: Checkpoint[S]) -> None:
        if not isinstance(checkpoint.state, self._schema):
            raise CheckpointError(
                f"this checkpointer stores {self._schema.__qualname__}, "
                f"got a state of type {type(checkpoint.state).__qualname__}"
            )
        stored = self._copied(checkpoint) if self._copy else checkpoint
        with self._lock:
            thread = self._threads.get(checkpoint.thread_id)
            if thread is None:
                # Checked only for a new thread: every stored thread's id is a str already.
                check_thread_id("checkpoint.thread_id", checkpoint.thread_id)
                self._threads[checkpoint.thread_id] = _Thread(
                    first=checkpoint.step,
                    items=[stored],
                    created=stored,
                    schema_version=self._schema.schema_version,
                )
                return
            latest = thread.items[-1].step
            if checkpoint.step <= latest or checkpoint.parent is not None:
                raise ConflictError(checkpoint.thread_id, checkpoint.step, latest)
            if checkpoint.step != latest + 1:
                raise CheckpointError(
                    f"thread {checkpoint.thread_id!r} is at step {latest}; the next checkpoint "
                    f"must be step {latest + 1}, got step {checkpoint.step}"
                )
            thread.items.append(stored)

    def load(self, thread_id: str) -> Checkpoint[S]:
        with self._lock:
            return self._out(self._get(thread_id).items[-1])

    def threads(self) -> list[ThreadInfo]:
        with self._lock:
            infos = [t.info(self._schema.__qualname__) for t in self._threads.values()]
        return sorted(infos, key=lambda i: i.created_at)

    def history(
        self, thread_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Checkpoint[S]]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit!r}")
        with self._lock:
            thread = self._get(thread_id)
            end = (
                len(thread.items)
                if before is None
                else max(0, min(len(thread.items), before - thread.first))
            )
            start = 0 if limit is None else max(0, end - limit)
            items = thread.items[start:end]
        return [self._out(cp) for cp in reversed(items)]

    def load_at(self, thread_id: str, step: int) -> Checkpoint[S]:
        with self._lock:
            thread = self._get(thread_id)
            index = step - thread.first
            if not 0 <= index < len(thread.items):
                detail = (
                    "pruned"
                    if 0 <= step < thread.first
                    else f"its steps are {thread.first}..{thread.first + len(thread.items) - 1}"
                )
                raise StepNotFoundError(thread_id, step, detail)
            return self._out(thread.items[index])

    def delete(self, thread_id: str) -> None:
        with self._lock:
            self._get(thread_id)
            del self._threads[thread_id]

    def prune(self, thread_id: str, *, keep: int) -> int:
        if keep < 1:
            raise ValueError(
                f"keep must be at least 1 (the latest checkpoint is always kept), got {keep!r}"
            )
        with self._lock:
            thread = self._get(thread_id)
            gone = max(0, len(thread.items) - keep)
            if gone:
                del thread.items[:gone]
                thread.first += gone
            return gone
