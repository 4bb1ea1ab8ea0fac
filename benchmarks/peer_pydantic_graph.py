"""The pydantic-graph workload: the same one-node loop, with pydantic-graph's v1 ``Graph`` API.

A ``BaseNode`` subclass appends one message to the (mutable dataclass) state
and counts; it returns itself until the count reached the run length (given as
the graph's deps), then ``End``. Persistence: none (pydantic-graph's default,
which keeps only the latest snapshot in memory) and ``FullStatePersistence``
(every snapshot, deep-copied). Importing this module fails without
pydantic-graph.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

# The v1 API from the modules that define it: the package root re-exports it with a warning.
from pydantic_graph.basenode import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph
from pydantic_graph.persistence.in_mem import FullStatePersistence

from benchmarks.common import Plan, message, repeated

Persistence: TypeAlias = Literal["none", "full"]
"""``"none"``: pydantic-graph's default persistence; ``"full"``: ``FullStatePersistence``."""

PERSISTENCES: tuple[Persistence, ...] = ("none", "full")
"""Every persistence, in the order the report lists them."""

DISTRIBUTIONS = ("pydantic-graph",)
"""The distributions whose versions the report names."""


@dataclass
class ChatState:
    """The loop's state: a message list and a counter."""

    messages: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class Talk(BaseNode[ChatState, int, int]):
    """Append this step's message and count it; the deps are the run length."""

    async def run(self, ctx: GraphRunContext[ChatState, int]) -> Talk | End[int]:
        ctx.state.messages.append(message(ctx.state.count))
        ctx.state.count += 1
        if ctx.state.count >= ctx.deps:
            return End(ctx.state.count)
        return Talk()


GRAPH = Graph(nodes=[Talk], name="loop")
"""The one-node loop."""


async def _run(steps: int, kind: Persistence) -> float:
    persistence = FullStatePersistence[ChatState, int]() if kind == "full" else None
    gc.collect()
    t0 = time.perf_counter()
    result = await GRAPH.run(Talk(), state=ChatState(), deps=steps, persistence=persistence)
    elapsed = time.perf_counter() - t0
    if result.output != steps:
        raise RuntimeError(f"the pydantic-graph run counted {result.output}, not {steps}")
    if persistence is not None and len(persistence.history) < steps:
        raise RuntimeError(f"FullStatePersistence kept {len(persistence.history)} snapshots")
    return elapsed


def step_run(plan: Plan, kind: Persistence, steps: int) -> float:
    """Median seconds per step of a ``steps``-step run."""

    def measure(r: int) -> float:
        asyncio.run(_run(2, kind))  # warm-up
        return asyncio.run(_run(steps, kind)) / steps

    return repeated(plan, measure)


def peak_memory(kind: Persistence, steps: int) -> int:
    """Peak Python heap (tracemalloc) in bytes during one ``steps``-step run."""
    asyncio.run(_run(2, kind))
    tracemalloc.start()
    try:
        asyncio.run(_run(steps, kind))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
