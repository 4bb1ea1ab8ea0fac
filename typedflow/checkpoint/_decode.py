"""Making loaded checkpoints quickly: a backend that reads thousands of rows at a time
spends much of its time making :class:`Checkpoint` and :class:`NodeWrite` objects.

The attrs ``__init__`` of these frozen classes stores each field through
``object.__setattr__`` and converts ``metadata`` again; :func:`make_checkpoint`
and :func:`make_write` store each field through its slot, in about half the
time. The values given must be what ``__init__`` would store (``metadata``
made by :func:`freeze_metadata`). Should either class change so that its
``__init__`` does more than store its arguments (a validator, another
converter, a hidden slot), that class's own ``__init__`` is used.

:func:`make_checkpoints` and :func:`make_writes` make many at once, one field
at a time over all of them: the loops run in C (``map``), which takes about a
third of the time of a call per object.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any

import attrs

from typedflow.checkpoint.base import (
    Checkpoint,
    Metadata,
    NodeFailure,
    NodeWrite,
    ParentRef,
    StepStatus,
    freeze_metadata,
)

__all__ = ["SharedFields", "make_checkpoint", "make_checkpoints", "make_write", "make_writes"]

_Setter = Callable[[object, object], None]


def _slot_setters(
    cls: type, converters: Mapping[str, object] | None = None
) -> tuple[_Setter, ...] | None:
    """The slot setters of ``cls``'s fields, in order, or None when its ``__init__`` does more
    than store its arguments; ``converters`` names the converters the caller applies itself."""
    allowed = converters or {}
    fields = attrs.fields(cls)
    slots = {s for c in cls.__mro__ for s in c.__dict__.get("__slots__", ())} - {"__weakref__"}
    if slots != {a.name for a in fields} or hasattr(cls, "__attrs_post_init__"):
        return None
    setters: list[_Setter] = []
    for a in fields:
        if a.validator is not None or a.converter is not allowed.get(a.name):
            return None
        descriptor = cls.__dict__.get(a.name)
        if not isinstance(descriptor, types.MemberDescriptorType):
            return None
        setters.append(descriptor.__set__)
    return tuple(setters)


_new = object.__new__
_consume: Callable[[Iterable[object]], None] = deque[object](maxlen=0).extend
"""Run an iterator to its end, in C."""
_checkpoint_setters = _slot_setters(Checkpoint, {"metadata": freeze_metadata})
_write_setters = _slot_setters(NodeWrite)


def _unused(obj: object, value: object) -> None:  # pragma: no cover  # never called
    raise TypeError("no slot setter: the class's own __init__ is used")


(
    _set_thread_id,
    _set_step,
    _set_state,
    _set_next,
    _set_status,
    _set_writes,
    _set_pending,
    _set_failures,
    _set_reason,
    _set_duration,
    _set_created_at,
    _set_parent,
    _set_metadata,
) = _checkpoint_setters or (_unused,) * 13
_set_node, _set_updates, _set_goto, _set_write_duration = _write_setters or (_unused,) * 4


def make_checkpoint(
    thread_id: str,
    next: tuple[str, ...],
    status: StepStatus,
    failures: tuple[NodeFailure, ...],
    reason: str | None,
    parent: ParentRef | None,
    metadata: Metadata,
    step: int,
    state: Any,
    writes: tuple[NodeWrite[object], ...],
    pending: tuple[NodeWrite[object], ...],
    duration: float,
    created_at: datetime,
) -> Checkpoint[Any]:
    """``Checkpoint(...)`` with every field given, those that the steps of a thread often
    share first; ``metadata`` made by :func:`freeze_metadata`."""
    if _checkpoint_setters is None:
        return Checkpoint(
            thread_id=thread_id,
            step=step,
            state=state,
            next=next,
            status=status,
            writes=writes,
            pending=pending,
            failures=failures,
            reason=reason,
            duration=duration,
            created_at=created_at,
            parent=parent,
            metadata=metadata,
        )
    # Unrolled: a loop over the setters costs about 1 µs more per checkpoint.
    cp: Checkpoint[Any] = _new(Checkpoint)
    _set_thread_id(cp, thread_id)
    _set_step(cp, step)
    _set_state(cp, state)
    _set_next(cp, next)
    _set_status(cp, status)
    _set_writes(cp, writes)
    _set_pending(cp, pending)
    _set_failures(cp, failures)
    _set_reason(cp, reason)
    _set_duration(cp, duration)
    _set_created_at(cp, created_at)
    _set_parent(cp, parent)
    _set_metadata(cp, metadata)
    return cp


def make_write(
    node: str, updates: tuple[object, ...], goto: tuple[str, ...] | None, duration: float
) -> NodeWrite[object]:
    """``NodeWrite(node=node, updates=updates, goto=goto, duration=duration)``."""
    if _write_setters is None:
        return NodeWrite(node=node, updates=updates, goto=goto, duration=duration)
    w: NodeWrite[object] = _new(NodeWrite)
    _set_node(w, node)
    _set_updates(w, updates)
    _set_goto(w, goto)
    _set_write_duration(w, duration)
    return w


SharedFields = tuple[
    tuple[str, ...], StepStatus, tuple[NodeFailure, ...], str | None, ParentRef | None, Metadata
]
"""The fields of a checkpoint that the steps of a thread often share, in the order of
:func:`make_checkpoint`'s arguments: ``next, status, failures, reason, parent, metadata``."""


def make_checkpoints(
    thread_id: str,
    shared: Sequence[SharedFields],
    step: Sequence[int],
    state: Iterable[Any],
    writes: Iterable[tuple[NodeWrite[object], ...]],
    pending: Iterable[tuple[NodeWrite[object], ...]],
    duration: Iterable[float],
    created_at: Iterable[datetime],
) -> list[Checkpoint[Any]]:
    """:func:`make_checkpoint` for each item of the arguments taken together (``shared`` holds
    the shared fields of each checkpoint, often the same tuple); one checkpoint per item of
    ``step``, the others at least as long."""
    if not step:
        return []
    if _checkpoint_setters is None:
        return [
            make_checkpoint(thread_id, *fields, *rest)
            # Not strict: an argument may be endless (``itertools.repeat``).
            for fields, *rest in zip(
                shared, step, state, writes, pending, duration, created_at, strict=False
            )
        ]
    cps: list[Checkpoint[Any]] = list(map(_new, repeat(Checkpoint, len(step))))
    next_, status, failures, reason, parent, metadata = zip(*shared, strict=True)
    for setter, values in (
        (_set_thread_id, repeat(thread_id)),
        (_set_step, step),
        (_set_state, state),
        (_set_next, next_),
        (_set_status, status),
        (_set_writes, writes),
        (_set_pending, pending),
        (_set_failures, failures),
        (_set_reason, reason),
        (_set_duration, duration),
        (_set_created_at, created_at),
        (_set_parent, parent),
        (_set_metadata, metadata),
    ):
        _consume(map(setter, cps, values))
    return cps


def make_writes(
    node: Iterable[str],
    updates: Iterable[tuple[object, ...]],
    goto: Iterable[tuple[str, ...] | None],
    duration: Sequence[float],
) -> list[NodeWrite[object]]:
    """:func:`make_write` for each item of the arguments taken together; one write per item of
    ``duration``, the others at least as long."""
    if _write_setters is None:
        return list(map(make_write, node, updates, goto, duration))
    ws: list[NodeWrite[object]] = list(map(_new, repeat(NodeWrite, len(duration))))
    for setter, values in (
        (_set_node, node),
        (_set_updates, updates),
        (_set_goto, goto),
        (_set_write_duration, duration),
    ):
        _consume(map(setter, ws, values))
    return ws
