"""The LangGraph workload: the same one-node loop as typedflow's, written the LangGraph way.

A ``StateGraph`` over a ``TypedDict`` whose message list has the
``Annotated[list[str], operator.add]`` reducer; node ``talk`` appends one
message and counts, and a conditional edge loops back to it until the count is
reached (``recursion_limit`` is raised to fit). Savers: none, ``InMemorySaver``
and ``SqliteSaver`` on a file (from ``langgraph-checkpoint-sqlite``), with
LangGraph's default durability. Importing this module fails without LangGraph.
"""

from __future__ import annotations

import gc
import operator
import sqlite3
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from benchmarks.common import Plan, file_size, message, repeated, run_together, timed

Saver: TypeAlias = Literal["none", "memory", "sqlite"]
"""Where LangGraph's checkpoints go: ``"none"``, ``InMemorySaver``, ``SqliteSaver`` (a file)."""

SAVERS: tuple[Saver, ...] = ("none", "memory", "sqlite")
"""Every saver, in the order the report lists them."""

DISTRIBUTIONS = ("langgraph", "langgraph-checkpoint-sqlite")
"""The distributions whose versions the report names."""

IMPORT = "langgraph.graph"
"""The module whose import time is compared with ``import typedflow``."""


class ChatState(TypedDict):
    """The loop's state: a message list with the ``operator.add`` reducer, and a counter."""

    messages: Annotated[list[str], operator.add]
    count: int


def talk(state: ChatState) -> dict[str, Any]:
    """Append this step's message and count it."""
    return {"messages": [message(state["count"])], "count": state["count"] + 1}


def app(steps: int, saver: BaseCheckpointSaver[Any] | None) -> Any:
    """The compiled one-node loop that runs ``steps`` steps."""
    graph = StateGraph(ChatState)
    graph.add_node("talk", talk)
    graph.add_edge(START, "talk")
    graph.add_conditional_edges("talk", lambda s: END if s["count"] >= steps else "talk")
    return graph.compile(checkpointer=saver)


def run(compiled: Any, steps: int, thread_id: str) -> None:
    """One run of the loop on a new thread."""
    config = {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 10}
    out = compiled.invoke({"messages": [], "count": 0}, config)
    if out["count"] != steps:
        raise RuntimeError(f"the LangGraph run counted {out['count']}, not {steps}")


@contextmanager
def saver_of(kind: Saver, path: Path) -> Iterator[BaseCheckpointSaver[Any] | None]:
    """A fresh saver of ``kind`` (on the new file ``path`` for SQLite)."""
    if kind == "none":
        yield None
    elif kind == "memory":
        yield InMemorySaver()
    else:
        con = sqlite3.connect(str(path), check_same_thread=False)
        try:
            yield SqliteSaver(con)
        finally:
            con.close()


def step_run(plan: Plan, kind: Saver, steps: int, directory: Path) -> tuple[float, int]:
    """Median seconds per step of a ``steps``-step run, and (for SQLite) the file's size."""
    sizes: list[int] = []

    def measure(r: int) -> float:
        path = directory / f"langgraph-{kind}-{steps}-{r}.sqlite"
        with saver_of(kind, path) as saver:
            run(app(2, saver), 2, "warm-up")
            compiled = app(steps, saver)
            seconds = timed(lambda: run(compiled, steps, "t"))
        if path.exists():
            sizes.append(file_size(path))
        return seconds / steps

    seconds = repeated(plan, measure)
    return seconds, sizes[0] if sizes else 0


def peak_memory(kind: Saver, steps: int, directory: Path) -> int:
    """Peak Python heap (tracemalloc) in bytes during one ``steps``-step run."""
    with saver_of(kind, directory / f"langgraph-memory-{kind}.sqlite") as saver:
        run(app(2, saver), 2, "warm-up")
        compiled = app(steps, saver)
        gc.collect()
        tracemalloc.start()
        try:
            run(compiled, steps, "t")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def concurrent_threads(plan: Plan, directory: Path) -> float:
    """Checkpoints per second of many Python threads running at once on one ``SqliteSaver``
    (counted like typedflow's: one per step plus the input)."""
    runs, steps = plan.concurrent_runs, plan.concurrent_steps

    def measure(r: int) -> float:
        with saver_of("sqlite", directory / f"langgraph-threads-{r}.sqlite") as saver:
            run(app(2, saver), 2, "warm-up")
            compiled = app(steps, saver)
            elapsed = run_together(runs, lambda i: run(compiled, steps, f"run-{i}"))
        return runs * (steps + 1) / elapsed

    return repeated(plan, measure)
