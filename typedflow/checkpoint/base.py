"""The checkpoint model and the contract every checkpoint backend implements.

A **checkpoint** is saved after every step of a run (step 0 holds the input).
It records the state after the step, the nodes that ran and the updates they
returned (:class:`NodeWrite`), the pending queue of the next step, failures,
timings, the parent of a fork and free-form metadata.

A step that cannot complete (a node raised or returned :class:`Interrupt`,
the reducer or a route failed) is saved too, with status ``"error"`` or
``"interrupted"``: its ``state`` is unchanged, its ``next`` is the same queue
again, and ``pending`` keeps the writes of the nodes that did finish, so that
a resume runs only what is left and every node of a step still sees the same
state.

Backends subclass :class:`Checkpointer` (save and load the latest) or
:class:`HistoryCheckpointer` (the whole history: list, load at a step, fork,
delete, prune). The rules every backend keeps, and that the contract suite in
:mod:`typedflow.testing` checks:

- A thread's history is linear. ``save`` accepts a thread's first checkpoint
  at any step (step 0 for a new run, the origin's step for a fork) and after
  that only ``latest + 1``. A step that is already stored, or a checkpoint
  with a ``parent`` for a thread that exists, raises
  :class:`~typedflow.errors.ConflictError`, so two writers can never silently
  fork a history.
- A saved checkpoint never changes: loading returns an equal value, whatever
  the caller did to the object it saved or to objects it loaded before.
- Unknown threads raise :class:`~typedflow.errors.ThreadNotFoundError`,
  missing steps :class:`~typedflow.errors.StepNotFoundError`.
- A failed ``save`` stores nothing of that checkpoint.
- A backend is safe to share between Python threads and asyncio tasks.

A thread id is a ``str``: ``save``, ``asave``, ``load``, ``load_at``,
``history``, ``delete``, ``prune`` and ``fork`` given any other id raise the
builtin ``TypeError`` and store nothing. The base class wraps the methods a
backend defines to check that, so a backend never sees another id. A backend
that checks ids itself (with :func:`check_thread_id`, where it creates or
misses a thread, at no cost per call) says so with
``class MyBackend(HistoryCheckpointer[S], checks_thread_ids=True)``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeAlias, cast, final

import attrs

from typedflow import _clock
from typedflow._typing import S2, HasSchema, HasState, S, S_co, U, U_co, type_name
from typedflow.errors import ConflictError, ThreadNotFoundError, UpdateTypeError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = [
    "FORK_WRITER",
    "RESUME_WRITER",
    "Checkpoint",
    "Checkpointer",
    "FrozenMetadata",
    "HistoryCheckpointer",
    "Metadata",
    "freeze_metadata",
    "check_thread_id",
    "NodeFailure",
    "NodeWrite",
    "ParentRef",
    "StepStatus",
    "ThreadInfo",
]

StepStatus: TypeAlias = Literal["ok", "interrupted", "error"]
"""How a step ended:

- ``"ok"``: the step completed and its updates are applied;
- ``"interrupted"``: the run stopped for a human (before or after a named node,
  or a node returned ``Interrupt``);
- ``"error"``: a node, the reducer or a route failed; ``failures`` says which.
"""

MetadataValue: TypeAlias = str | int | float | bool | None
"""A metadata value: a JSON scalar."""

Metadata: TypeAlias = Mapping[str, MetadataValue]
"""Free-form metadata saved with each checkpoint (run labels, user ids, ...)."""

RESUME_WRITER: Final = "__resume__"
"""The ``node`` of the write that a resume update is recorded under."""

FORK_WRITER: Final = "__fork__"
"""The ``node`` of the write that a fork update is recorded under."""


@final
class FrozenMetadata(Mapping[str, MetadataValue]):
    """A read-only copy of the metadata given to a run; hashable, picklable and copyable
    (``types.MappingProxyType`` is neither picklable nor deep-copyable)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, MetadataValue] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> MetadataValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMetadata({self._data!r})"

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __reduce__(self) -> tuple[type[FrozenMetadata], tuple[dict[str, MetadataValue]]]:
        return (FrozenMetadata, (self._data,))


def freeze_metadata(value: Metadata) -> Metadata:
    """A checked, read-only copy of run metadata (JSON scalars only)."""
    if isinstance(value, FrozenMetadata):
        return value
    for key, item in value.items():
        # Untyped callers may pass anything; the store only takes JSON scalars.
        if not isinstance(key, str) or not isinstance(item, str | int | float | bool | None):  # type: ignore[redundant-expr]  # see above
            raise TypeError(
                f"metadata must map str to str, int, float, bool or None; got {key!r}: {item!r}"
            )
    return FrozenMetadata(value)


@attrs.frozen(kw_only=True)
class NodeWrite(Generic[U_co]):
    """What one node activation returned in a step."""

    node: str
    """The node's name (``__resume__`` / ``__fork__`` for updates given on resume / fork)."""
    updates: tuple[U_co, ...] = ()
    """The updates it returned, in order; applied in this order through the reducer."""
    goto: tuple[str, ...] | None = None
    """The targets of a returned ``Goto``; None when the node's edges or route decide."""
    duration: float = 0.0
    """How long the node ran, in seconds."""


@attrs.frozen(kw_only=True)
class NodeFailure:
    """Why a node (or the reducer, or a route, on behalf of a node) failed in a step."""

    node: str
    """The node that failed, or whose update or route failed."""
    error_type: str
    """The qualified name of the exception class, such as ``builtins.ValueError``."""
    message: str
    """The exception's message."""
    duration: float | None = None
    """How long the node ran until it raised (or timed out, or returned a value that is not
    an update), in seconds; None when the failure is the reducer's or a route's, which run
    after the node, and in checkpoints stored before failures had durations."""


@attrs.frozen(kw_only=True)
class ParentRef:
    """Where a forked thread came from."""

    thread_id: str
    """The origin thread."""
    step: int
    """The origin step the fork was taken at."""


@attrs.frozen(kw_only=True)
class Checkpoint(Generic[S_co]):
    """The saved outcome of one step of one thread."""

    thread_id: str
    """The thread (one run and its resumes) this checkpoint belongs to."""
    step: int
    """The step number: 0 is the input, then one per super-step."""
    state: S_co
    """The state after the step."""
    next: tuple[str, ...]
    """The pending queue: the nodes the next step runs, in order; empty when the run is done."""
    status: StepStatus = "ok"
    """How the step ended; see :data:`StepStatus`."""
    _writes: tuple[NodeWrite[object], ...] = ()
    _pending: tuple[NodeWrite[object], ...] = ()
    failures: tuple[NodeFailure, ...] = ()
    """The failures of an ``"error"`` step, in queue order."""
    reason: str | None = None
    """Why the run stopped here (an interrupt's reason or an error summary), else None."""
    duration: float = 0.0
    """Wall time of the step, in seconds."""
    created_at: datetime = attrs.field(factory=lambda: _clock.now())
    """When the checkpoint was made (UTC)."""
    parent: ParentRef | None = None
    """For the first checkpoint of a fork: the thread and step it was forked from."""
    metadata: Metadata = attrs.field(factory=FrozenMetadata, converter=freeze_metadata)
    """Free-form metadata given to the run (read-only)."""

    @property
    def writes(self: HasState[U]) -> tuple[NodeWrite[U], ...]:
        """The nodes that ran in this step and the updates they returned, in queue order."""
        # The writes are stored untyped; ``self.state`` proves they are of its update type.
        return cast("tuple[NodeWrite[U], ...]", cast("Checkpoint[Any]", self)._writes)

    @property
    def pending(self: HasState[U]) -> tuple[NodeWrite[U], ...]:
        """Writes already made for nodes in ``next`` (a step that failed or was
        interrupted part-way); a resume reuses them instead of running those nodes again."""
        # Stored untyped like ``writes``; see there.
        return cast("tuple[NodeWrite[U], ...]", cast("Checkpoint[Any]", self)._pending)

    @property
    def done(self) -> bool:
        """True when the run has finished: nothing is pending and it did not stop early."""
        return not self.next and self.status == "ok"


@attrs.frozen(kw_only=True)
class ThreadInfo:
    """A summary of one stored thread."""

    thread_id: str
    """The thread id."""
    schema_name: str
    """The qualified name of the thread's state schema."""
    schema_version: int
    """The schema's ``schema_version`` when the thread was created."""
    created_at: datetime
    """When the thread's first checkpoint was made."""
    latest_step: int
    """The thread's newest step."""
    status: StepStatus
    """The status of the newest step."""
    done: bool
    """True when the newest checkpoint finished the run."""
    parent: ParentRef | None = None
    """Where the thread was forked from, if it is a fork."""


def check_thread_id(name: str, value: object) -> None:
    """Raise the builtin ``TypeError``, naming the argument ``name``, unless ``value`` is a
    ``str`` (for backends that check thread ids themselves)."""
    if type(value) is not str and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} of type {type(value).__qualname__}")


# Wrappers that check thread ids before a backend's method runs. An id that is not a str
# (an int from JSON, say) would otherwise be stored by one backend and fail deep inside
# another. For a str the check is one type comparison; anything else (a str subclass, or
# the mistake) takes check_thread_id().


def _checked_save(save: Callable[[Any, Checkpoint[Any]], None]) -> Callable[..., None]:
    @functools.wraps(save)
    def checked(self: object, checkpoint: Checkpoint[Any]) -> None:
        tid: object = checkpoint.thread_id
        if type(tid) is not str:  # inline, not check_thread_id(): no call for a str
            check_thread_id("checkpoint.thread_id", tid)
        return save(self, checkpoint)

    return checked


def _checked_asave(
    asave: Callable[[Any, Checkpoint[Any]], Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    @functools.wraps(asave)
    async def checked(self: object, checkpoint: Checkpoint[Any]) -> None:
        tid: object = checkpoint.thread_id
        if type(tid) is not str:  # inline, not check_thread_id(): no call for a str
            check_thread_id("checkpoint.thread_id", tid)
        await asave(self, checkpoint)

    return checked


def _checked_by_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: object, thread_id: object, *args: Any, **kwargs: Any) -> Any:
        if type(thread_id) is not str:
            check_thread_id("thread_id", thread_id)
        return method(self, thread_id, *args, **kwargs)

    return checked


def _checked_fork(fork: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fork)
    def checked(
        self: object, thread_id: object, step: int, new_thread_id: object, **kwargs: Any
    ) -> Any:
        check_thread_id("thread_id", thread_id)
        check_thread_id("new_thread_id", new_thread_id)
        return fork(self, thread_id, step, new_thread_id, **kwargs)

    return checked


_CHECKERS: Final[dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = {
    "save": _checked_save,
    "asave": _checked_asave,
    "load": _checked_by_thread,
    "load_at": _checked_by_thread,
    "history": _checked_by_thread,
    "delete": _checked_by_thread,
    "prune": _checked_by_thread,
    "fork": _checked_fork,
}


class Checkpointer(ABC, Generic[S]):
    """Saves and loads the latest checkpoint of each thread, for states of schema ``S``.

    Usable as a context manager; leaving it calls :meth:`close`.
    """

    def __init_subclass__(cls, *, checks_thread_ids: bool = False, **kwargs: Any) -> None:
        # Every backend, a user's too, gets the thread id checks: the save, load, ... that
        # a class defines are wrapped (abstract ones are left to the class that implements
        # them), unless the class says it checks ids itself.
        super().__init_subclass__(**kwargs)
        if checks_thread_ids:
            return
        for name, make in _CHECKERS.items():
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, make(method))

    @property
    @abstractmethod
    def schema(self) -> type[S]:
        """The state schema this checkpointer stores."""

    @property
    def _schema_applies(self) -> type[S]:
        # The schema again, for the self type of fork(); see HasSchema.
        return self.schema

    @abstractmethod
    def save(self, checkpoint: Checkpoint[S]) -> None:
        """Store a checkpoint durably (as the backend's durability mode promises).

        Raises:
            ConflictError: the thread already holds this step (or a later one).
            CheckpointError: the checkpoint could not be stored; nothing of it is.
        """

    async def asave(self, checkpoint: Checkpoint[S]) -> None:
        """:meth:`save` for asyncio code; backends with blocking I/O override it."""
        self.save(checkpoint)

    @abstractmethod
    def load(self, thread_id: str) -> Checkpoint[S]:
        """The newest checkpoint of a thread.

        Raises:
            ThreadNotFoundError: nothing is stored for ``thread_id``.
        """

    @abstractmethod
    def threads(self) -> list[ThreadInfo]:
        """Every stored thread, oldest first."""

    def flush(self) -> None:  # optional hook: backends without buffering have nothing to do
        """Make every saved checkpoint durable now (for batched durability)."""

    async def aflush(self) -> None:
        """:meth:`flush` for callers on an event loop; override it if flushing blocks."""
        self.flush()

    def close(self) -> None:  # optional hook: in-memory backends hold no resources
        """Flush and release the backend's resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HistoryCheckpointer(Checkpointer[S]):
    """A checkpointer that keeps every step: list, load at a step, fork, delete, prune."""

    @abstractmethod
    def history(
        self, thread_id: str, *, limit: int | None = None, before: int | None = None
    ) -> list[Checkpoint[S]]:
        """A thread's checkpoints, newest first.

        Args:
            thread_id: The thread.
            limit: Return at most this many.
            before: Only steps lower than this.

        Raises:
            ThreadNotFoundError: nothing is stored for ``thread_id``.
        """

    @abstractmethod
    def load_at(self, thread_id: str, step: int) -> Checkpoint[S]:
        """The checkpoint of a thread at a step.

        Raises:
            ThreadNotFoundError: nothing is stored for ``thread_id``.
            StepNotFoundError: the thread holds no checkpoint at ``step`` (never made or pruned).
        """

    @abstractmethod
    def delete(self, thread_id: str) -> None:
        """Delete every checkpoint of a thread (forks of it are kept).

        Raises:
            ThreadNotFoundError: nothing is stored for ``thread_id``.
        """

    @abstractmethod
    def prune(self, thread_id: str, *, keep: int) -> int:
        """Delete all but the newest ``keep`` (>= 1) checkpoints of a thread; return how many went.

        Raises:
            ThreadNotFoundError: nothing is stored for ``thread_id``.
            ValueError: ``keep`` is below 1.
        """

    def fork(
        self: HasSchema[U, S2],
        thread_id: str,
        step: int,
        new_thread_id: str,
        *,
        update: U | None = None,
        metadata: Metadata | None = None,
    ) -> Checkpoint[S2]:
        """Copy a thread's checkpoint at ``step`` into a new thread and return it.

        The new thread's first checkpoint has the same step number, state,
        pending queue and pending writes, and records ``parent``. With
        ``update``, the update is applied to the state through the reducer
        (recorded as a write of ``__fork__``) and the pending writes are
        dropped, so the next step runs in full against the edited state.
        The two threads are independent from then on.

        Raises:
            ThreadNotFoundError / StepNotFoundError: no such origin.
            ConflictError: ``new_thread_id`` already exists.
            UpdateTypeError: ``update`` is not of the schema's update type.
            ReducerError: the schema's ``apply`` raised on ``update``.
            TypeError: ``thread_id`` or ``new_thread_id`` is not a str.
        """
        # The receiver is a HistoryCheckpointer; the protocol only recovers U and S2.
        this = cast("HistoryCheckpointer[Any]", self)
        origin = this.load_at(thread_id, step)
        writes: tuple[NodeWrite[object], ...] = ()
        pending = origin.pending
        state = origin.state
        if update is not None:
            from typedflow._engine import apply_update
            from typedflow.schema import schema_info

            info = schema_info(this.schema)
            if not info.check_update(update):
                raise UpdateTypeError(
                    f"the fork update {update!r} (type {type(update).__qualname__}) of thread "
                    f"{new_thread_id!r}, forked from thread {thread_id!r} at step {step}, is not "
                    f"of the update type {type_name(info.update_type)} of "
                    f"{this.schema.__qualname__}; nothing was stored: fork with an update of "
                    "that type, or none",
                    thread_id=new_thread_id,
                    step=step,
                    node=FORK_WRITER,
                )
            state = apply_update(
                state, update, thread_id=new_thread_id, step=step, node=FORK_WRITER
            )
            writes = (NodeWrite(node=FORK_WRITER, updates=(update,)),)
            pending = ()
        try:
            existing = this.load(new_thread_id)
        except ThreadNotFoundError:
            pass
        else:
            raise ConflictError(
                new_thread_id,
                step,
                existing.step,
                hint="a fork needs a thread id of its own: fork into a new thread id",
            )
        checkpoint: Checkpoint[Any] = Checkpoint(
            thread_id=new_thread_id,
            step=step,
            state=state,
            next=origin.next,
            status="ok" if update is not None else origin.status,
            writes=writes,
            pending=pending,
            failures=() if update is not None else origin.failures,
            reason=None if update is not None else origin.reason,
            parent=ParentRef(thread_id=thread_id, step=step),
            metadata=metadata if metadata is not None else origin.metadata,
        )
        this.save(checkpoint)
        return cast("Checkpoint[S2]", checkpoint)  # the checkpoint holds this backend's S
