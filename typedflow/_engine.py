"""The step machinery shared by the runner and by forks: checking what nodes
return, applying updates through the reducer, and describing failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import attrs

from typedflow._typing import type_name
from typedflow.checkpoint.base import NodeFailure, NodeWrite
from typedflow.errors import NodeError, ReducerError, UpdateTypeError
from typedflow.nodes import Goto, Interrupt

if TYPE_CHECKING:
    from typedflow._typing import S
    from typedflow.schema import SchemaInfo

__all__ = ["Outcome", "Result", "apply_update", "failure_of", "outcome_of"]

Result: TypeAlias = "NodeWrite[object] | Outcome"
"""What one node activation came to: its write, or why it made none."""


def failure_of(node: str, exc: BaseException, duration: float | None = None) -> NodeFailure:
    """Describe an exception for a checkpoint's ``failures``; ``duration``: how long the node
    ran until it failed (None for a failure of the reducer or a route)."""
    cls = type(exc)
    return NodeFailure(
        node=node,
        error_type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        duration=duration,
    )


@attrs.define(slots=True)
class Outcome:
    """A node activation that came to no write: the node interrupted the run, or failed.
    (An activation that succeeded comes to its :class:`NodeWrite`.)"""

    node: str
    interrupt: Interrupt | None = None
    error: BaseException | None = None
    """The typedflow error to raise (its ``__cause__`` is the node's own exception)."""
    failure: NodeFailure | None = None


def node_failed(
    node: str, exc: Exception, duration: float, *, thread_id: str, step: int
) -> Outcome:
    """The outcome of a node that raised after running ``duration`` seconds."""
    err = NodeError(
        f"node {node!r} raised {type(exc).__name__}: {exc} (thread {thread_id!r}, step {step}); "
        f"the checkpoint of step {step - 1} is intact and the updates of the other nodes of "
        "the step are kept: fix the cause and resume the thread",
        thread_id=thread_id,
        step=step,
        node=node,
    )
    err.__cause__ = exc
    return Outcome(node, error=err, failure=failure_of(node, exc, duration))


def outcome_of(
    node: str, value: object, duration: float, info: SchemaInfo, *, thread_id: str, step: int
) -> Result:
    """Check and normalise what a node returned."""
    if type(value) in info.plain_update_classes:  # the usual case, decided by one lookup
        return NodeWrite(node=node, updates=(value,), duration=duration)
    goto: tuple[str, ...] | None = None
    if value is None:
        return NodeWrite(node=node, duration=duration)
    if isinstance(value, Interrupt):
        return Outcome(node, interrupt=value)
    raw: object = value
    if isinstance(value, Goto):
        goto = value.to
        raw = value.update
        if raw is None:
            return NodeWrite(node=node, goto=goto, duration=duration)
    items: Sequence[object] = raw if isinstance(raw, list | tuple) else (raw,)
    for item in items:
        if not info.check_update(item):
            where = " inside Goto" if goto is not None else ""
            exc = UpdateTypeError(
                f"node {node!r} returned {item!r}{where} (type {type(item).__qualname__}) at "
                f"step {step} of thread {thread_id!r}; a node of {info.schema.__qualname__} "
                f"must return {type_name(info.update_type)}, a list of them, Goto, Interrupt "
                "or None",
                thread_id=thread_id,
                step=step,
                node=node,
            )
            return Outcome(node, error=exc, failure=failure_of(node, exc, duration))
    return NodeWrite(node=node, updates=tuple(items), goto=goto, duration=duration)


def apply_update(state: S, update: object, *, thread_id: str, step: int, node: str) -> S:
    """``state.apply(update)``, with a failure or a wrong return type raised as ReducerError."""
    try:
        new = state.apply(update)
    except Exception as exc:
        raise ReducerError(
            f"{type(state).__qualname__}.apply raised {type(exc).__name__}: {exc} on the update "
            f"{update!r} of node {node!r} (thread {thread_id!r}, step {step}); nothing of the "
            "step was applied",
            thread_id=thread_id,
            step=step,
            node=node,
        ) from exc
    if type(new) is not type(state):
        raise ReducerError(
            f"{type(state).__qualname__}.apply returned {new!r} (type {type(new).__qualname__}) "
            f"for the update of node {node!r} (thread {thread_id!r}, step {step}); it must "
            f"return a new {type(state).__qualname__}",
            thread_id=thread_id,
            step=step,
            node=node,
        )
    return new
