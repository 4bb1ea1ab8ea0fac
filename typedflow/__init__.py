"""typedflow: durable, strictly typed agent workflows.

Declare an attrs state schema naming its update type, write nodes as plain
functions, and run them with :class:`Runner`, which saves a checkpoint after
every step so runs can be resumed, forked and queried.
"""

import logging

from typedflow import reducers
from typedflow.checkpoint.base import (
    FORK_WRITER,
    RESUME_WRITER,
    Checkpoint,
    Checkpointer,
    HistoryCheckpointer,
    Metadata,
    MetadataValue,
    NodeFailure,
    NodeWrite,
    ParentRef,
    StepStatus,
    ThreadInfo,
)
from typedflow.checkpoint.memory import InMemoryCheckpointer
from typedflow.errors import (
    CheckpointError,
    ConflictError,
    GraphError,
    IncompatibleSchemaError,
    NodeError,
    NodeTimeoutError,
    NotFoundError,
    ReducerError,
    RoutingError,
    RunError,
    SchemaError,
    SerializationError,
    StepLimitError,
    StepNotFoundError,
    StoreLockedError,
    ThreadNotFoundError,
    TypedflowError,
    UpdateTypeError,
)
from typedflow.nodes import END, Goto, Interrupt, Node, NodeOutput
from typedflow.runner import Completed, Interrupted, Route, Runner, RunResult
from typedflow.schema import UNSET, StateSchema, Unset, field, is_set

__all__ = [
    "END",
    "FORK_WRITER",
    "RESUME_WRITER",
    "UNSET",
    "Checkpoint",
    "CheckpointError",
    "Checkpointer",
    "Completed",
    "ConflictError",
    "Goto",
    "GraphError",
    "HistoryCheckpointer",
    "InMemoryCheckpointer",
    "IncompatibleSchemaError",
    "Interrupt",
    "Interrupted",
    "Metadata",
    "MetadataValue",
    "Node",
    "NodeError",
    "NodeFailure",
    "NodeOutput",
    "NodeTimeoutError",
    "NodeWrite",
    "NotFoundError",
    "ParentRef",
    "ReducerError",
    "Route",
    "RoutingError",
    "RunError",
    "RunResult",
    "Runner",
    "SchemaError",
    "SerializationError",
    "StateSchema",
    "StepLimitError",
    "StepNotFoundError",
    "StepStatus",
    "StoreLockedError",
    "ThreadInfo",
    "ThreadNotFoundError",
    "TypedflowError",
    "Unset",
    "UpdateTypeError",
    "field",
    "is_set",
    "reducers",
]

__version__ = "0.1.0"

# A library logs, the application decides where records go (and nothing prints by default).
logging.getLogger(__name__).addHandler(logging.NullHandler())
