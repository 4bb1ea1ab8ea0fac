"""Nodes and the commands a node may return.

A node is a function of the state (sync or ``async``) made into a
:class:`Node` by ``@Schema.node``. It returns one of (:data:`NodeOutput`):

- an update of the schema's update type, or a list/tuple of them;
- ``None``: nothing to change;
- :class:`Goto`: route to the named node(s), with optional update(s),
  instead of the node's static edges or conditional route;
- :class:`Interrupt`: stop the run here for a human; the node runs again on resume.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, Literal, TypeAlias

import attrs

from typedflow._typing import S, U, U_co
from typedflow.errors import GraphError

__all__ = ["END", "Goto", "Interrupt", "Node", "NodeOutput"]

END: Final = "__end__"
"""Route target meaning "this branch is finished"."""

End: TypeAlias = Literal["__end__"]
"""The type of :data:`END`."""


def _targets(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class Goto(Generic[U_co]):
    """A routing command: run ``to`` next (one name, several, or :data:`END`),
    after applying ``update`` (one update, several, or none)."""

    to: tuple[str, ...] = attrs.field(converter=_targets)
    """The node(s) to run next, in order; ``END`` ends this branch."""
    update: U_co | Sequence[U_co] | None = None
    """The update(s) to apply, like a node's plain return value."""


@attrs.frozen
class Interrupt:
    """Returned by a node to stop the run for a human. The node's step is not
    completed: on resume (optionally with an update) the node runs again."""

    reason: str
    """Why the run stopped, shown to whoever resumes it."""


# A real alias, not a string: users subscript it at run time too (``NodeOutput[MyUpdate]``
# in a ``cast``, an ``assert_type`` or an alias of their own).
NodeOutput: TypeAlias = U | Sequence[U] | Goto[U] | Interrupt | None
"""What a node may return: an update, several, a :class:`Goto`, an :class:`Interrupt`, or None."""


@attrs.frozen
class Node(Generic[S]):
    """A named step function of state schema ``S``. Make one with ``@Schema.node``."""

    name: str
    """The node's name in the graph: the function's name unless given."""
    fn: Callable[[S], object] = attrs.field(repr=False)
    """The wrapped function: ``fn(state)`` returns a :data:`NodeOutput` or an awaitable of one."""
    schema: type[S]
    """The state schema the node belongs to."""
    is_async: bool
    """True when ``fn`` is a coroutine function."""

    @classmethod
    def of(
        cls,
        schema: type[S],
        fn: Callable[[S], NodeOutput[Any] | Awaitable[NodeOutput[Any]]],
        *,
        name: str | None = None,
    ) -> Node[S]:
        """Make a node; prefer ``@Schema.node``, which mypy checks against the update type."""
        if not callable(fn):
            raise GraphError(f"a node must be a function of the state, got {fn!r}")
        node_name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(node_name, str) or not node_name or node_name == "<lambda>":
            raise GraphError(
                f"cannot name the node made from {fn!r}: "
                f"pass name=... to {schema.__qualname__}.node"
            )
        if node_name == END or node_name.startswith("__"):
            raise GraphError(f"node name {node_name!r} is reserved: names may not start with '__'")
        return cls(node_name, fn, schema, inspect.iscoroutinefunction(fn))
