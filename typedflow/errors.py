"""The exceptions typedflow raises.

Every error derives from :class:`TypedflowError` and from the builtin that
fits it, so ``except LookupError`` and ``except TypedflowError`` both work
(an argument of the wrong type or out of range raises the plain builtin
``TypeError`` or ``ValueError``)::

    TypedflowError
    ├── SchemaError (TypeError)           a state or update class typedflow cannot use
    ├── GraphError (TypeError)            a graph that cannot run (unknown or duplicate nodes, ...)
    ├── RunError (RuntimeError)           a run stopped; carries thread_id and step
    │   ├── NodeError                     a node raised; carries node, chains the node's exception
    │   │   └── NodeTimeoutError (TimeoutError)   a node ran past the runner's node_timeout
    │   ├── UpdateTypeError (TypeError)   a node returned something that is not an update
    │   ├── ReducerError                  the schema's ``apply`` raised
    │   ├── RoutingError                  a route failed or named an unknown node
    │   └── StepLimitError                the run reached its step limit
    ├── NotFoundError (LookupError)
    │   ├── ThreadNotFoundError           no checkpoint for that thread id
    │   └── StepNotFoundError             the thread has no checkpoint at that step
    └── CheckpointError (RuntimeError)    the checkpointer could not save or load
        ├── ConflictError                 that (thread, step) was already written by someone else
        ├── StoreLockedError              the store is in use by another process
        ├── SerializationError (TypeError)    a value could not be (de)serialized; names the field
        └── IncompatibleSchemaError       stored rows do not fit the current schema; names the field
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConflictError",
    "GraphError",
    "IncompatibleSchemaError",
    "NodeError",
    "NodeTimeoutError",
    "NotFoundError",
    "ReducerError",
    "RoutingError",
    "RunError",
    "SchemaError",
    "SerializationError",
    "StepLimitError",
    "StepNotFoundError",
    "StoreLockedError",
    "ThreadNotFoundError",
    "TypedflowError",
    "UpdateTypeError",
]


class TypedflowError(Exception):
    """The root of every error typedflow raises."""


class SchemaError(TypedflowError, TypeError):
    """A state or update class that typedflow cannot use (raised when it is first used)."""


class GraphError(TypedflowError, TypeError):
    """A graph that cannot run; raised when the runner is built, never mid-run."""


class RunError(TypedflowError, RuntimeError):
    """A run stopped. The thread's last saved checkpoint is intact and can be resumed."""

    def __init__(self, message: str, *, thread_id: str, step: int) -> None:
        super().__init__(message)
        self.thread_id = thread_id
        """The thread whose run stopped."""
        self.step = step
        """The step that could not be completed."""


class NodeError(RunError):
    """A node raised. The original exception is chained as ``__cause__``."""

    def __init__(self, message: str, *, thread_id: str, step: int, node: str) -> None:
        super().__init__(message, thread_id=thread_id, step=step)
        self.node = node
        """The name of the node that raised."""


class NodeTimeoutError(NodeError, TimeoutError):
    """A node ran longer than the runner's ``node_timeout``."""


class UpdateTypeError(RunError, TypeError):
    """A node returned a value that is not of its schema's update type."""

    def __init__(self, message: str, *, thread_id: str, step: int, node: str) -> None:
        super().__init__(message, thread_id=thread_id, step=step)
        self.node = node
        """The name of the node that returned the value."""


class ReducerError(RunError):
    """The schema's ``apply`` raised while applying a node's update."""

    def __init__(self, message: str, *, thread_id: str, step: int, node: str) -> None:
        super().__init__(message, thread_id=thread_id, step=step)
        self.node = node
        """The node whose update could not be applied."""


class RoutingError(RunError):
    """A route function raised, or a route or ``Goto`` named an unknown node."""

    def __init__(self, message: str, *, thread_id: str, step: int, node: str) -> None:
        super().__init__(message, thread_id=thread_id, step=step)
        self.node = node
        """The node whose successors could not be computed."""


class StepLimitError(RunError):
    """The run reached the runner's step limit; the last step's checkpoint is saved."""

    def __init__(self, message: str, *, thread_id: str, step: int, limit: int) -> None:
        super().__init__(message, thread_id=thread_id, step=step)
        self.limit = limit
        """The step limit that was reached."""


class NotFoundError(TypedflowError, LookupError):
    """A thread or step that the checkpointer does not hold."""


class ThreadNotFoundError(NotFoundError):
    """No checkpoint is stored for this thread id."""

    def __init__(self, thread_id: str, *, stored_by: str | None = None) -> None:
        if stored_by is None:
            message = (
                f"no checkpoint is stored for thread {thread_id!r}; "
                "start it with invoke(), or list the known threads with threads()"
            )
        else:
            message = (
                f"no checkpoint of this schema is stored for thread {thread_id!r}: it is stored "
                f"by {stored_by} (thread ids are unique within a database); read it through a "
                "checkpointer of that schema and table"
            )
        super().__init__(message)
        self.thread_id = thread_id
        """The thread id that was looked up."""
        self.stored_by = stored_by
        """Where a backend shared by several schemas found the thread instead (a DuckDB
        file: the schema and table), or None."""


class StepNotFoundError(NotFoundError):
    """The thread exists but holds no checkpoint at this step."""

    def __init__(self, thread_id: str, step: int, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"thread {thread_id!r} has no checkpoint at step {step!r}{extra}; "
            "list its steps with history()"
        )
        self.thread_id = thread_id
        """The thread that was looked up."""
        self.step = step
        """The step that is missing."""


class CheckpointError(TypedflowError, RuntimeError):
    """The checkpointer could not save or load. Storage driver errors are chained."""


class ConflictError(CheckpointError):
    """A checkpoint for this (thread, step) exists already: another writer got there first.

    typedflow never lets two writers silently fork one thread's history; fork
    explicitly into a new thread instead.
    """

    def __init__(
        self, thread_id: str, step: int, latest: int | None, *, hint: str | None = None
    ) -> None:
        # A backend cannot tell a thread id used before from a runner writing it now; callers
        # that know which it is (a fork, a resume from a past step) say what to do instead.
        if hint is None:
            hint = (
                "the thread id was used by an earlier run, or another runner is writing it "
                "now. Resume the thread, run under a new thread id, or fork into a new thread id"
            )
        super().__init__(
            f"thread {thread_id!r} already has a checkpoint at step {step!r} "
            f"(its latest step is {latest!r}): {hint}"
        )
        self.thread_id = thread_id
        """The thread that was written."""
        self.step = step
        """The step that was already taken."""
        self.latest = latest
        """The thread's latest stored step when the conflict was detected."""


class StoreLockedError(CheckpointError):
    """The store (a DuckDB file) is in use by another process."""


class SerializationError(CheckpointError, TypeError):
    """A value could not be serialized or deserialized. ``path`` names the field."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
        """Where the bad value sits, such as ``state.messages[3].role``."""


class IncompatibleSchemaError(CheckpointError):
    """Stored checkpoints do not fit the current schema; ``field`` names the mismatch."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field
        """The field path whose stored form does not fit the current schema."""
