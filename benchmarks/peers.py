"""The peers typedflow is compared with, each measured only when it is importable.

- ``langgraph`` (:mod:`benchmarks.peer_langgraph`): LangGraph with no saver,
  ``InMemorySaver`` and ``SqliteSaver``;
- ``pydantic_graph`` (:mod:`benchmarks.peer_pydantic_graph`): pydantic-graph's
  v1 ``Graph`` API with no persistence and with ``FullStatePersistence``.

``scripts/bench --peers`` installs the pinned versions of
``benchmarks/requirements-peers.txt`` into a virtual environment of their own.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Literal, TypeAlias

Peer: TypeAlias = Literal["langgraph", "pydantic_graph"]
"""A peer's name: ``"langgraph"`` or ``"pydantic_graph"``."""


def load(peer: Peer) -> ModuleType | str:
    """The peer's workload module, or why it cannot be measured here."""
    try:
        return importlib.import_module(f"benchmarks.peer_{peer}")
    except ImportError as exc:
        return f"not importable ({exc}); run scripts/bench --peers"
