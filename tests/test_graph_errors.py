"""Graphs that cannot run fail with GraphError when the runner is built, never mid-run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs
import pytest

from typedflow import (
    END,
    Checkpointer,
    GraphError,
    InMemoryCheckpointer,
    Node,
    Runner,
    StateSchema,
    TypedflowError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


@attrs.frozen
class Inc:
    """An update: how much to add."""

    by: int = 1
    """The amount added to ``n``."""


@attrs.frozen
class Counter(StateSchema[Inc]):
    """A counter."""

    n: int = 0
    """The count."""

    def apply(self, update: Inc) -> Counter:
        return Counter(n=self.n + update.by)


@attrs.frozen
class Other(StateSchema[Inc]):
    """Another schema with the same update type."""

    n: int = 0
    """The count."""

    def apply(self, update: Inc) -> Other:
        return Other(n=self.n + update.by)


@Counter.node
def a(state: Counter) -> Inc:
    return Inc()


@Counter.node
def b(state: Counter) -> Inc:
    return Inc()


@Other.node
def foreign(state: Other) -> Inc:
    return Inc()


def build(
    *,
    nodes: Sequence[Node[Counter]] = (a, b),
    entry: str | Sequence[str] = "a",
    edges: Mapping[str, str | Sequence[str]] | None = None,
    routes: Mapping[str, Callable[[Counter], str | Sequence[str]]] | None = None,
    checkpointer: Checkpointer[Counter] | None = None,
    interrupt_before: Sequence[str] = (),
    interrupt_after: Sequence[str] = (),
    step_limit: int = 100,
    concurrency: int = 16,
    node_timeout: float | None = None,
) -> Runner[Counter]:
    """A runner of the two-node Counter graph, with one argument changed by the test."""
    return Runner(
        Counter,
        nodes=nodes,
        entry=entry,
        edges=edges,
        routes=routes,
        checkpointer=checkpointer,
        interrupt_before=interrupt_before,
        interrupt_after=interrupt_after,
        step_limit=step_limit,
        concurrency=concurrency,
        node_timeout=node_timeout,
    )


def test_the_baseline_graph_builds_and_runs() -> None:
    # The cases below each change one argument of this graph, which is valid as is.
    runner = build(edges={"a": "b", "b": END}, routes=None)
    assert runner.invoke(Counter()).state.n == 2


def route_to_b(state: Counter) -> str:
    return "b"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: build(entry="nope"), r"entry names unknown node 'nope'", id="entry"),
        pytest.param(lambda: build(entry=["a", "nope"]), r"unknown node 'nope'", id="entry-list"),
        pytest.param(lambda: build(entry=[]), r"entry names no node", id="entry-empty"),
        pytest.param(lambda: build(entry=END), r"unknown node '__end__'", id="entry-end"),
        pytest.param(
            lambda: build(edges={"a": "nope"}), r"edges\['a'\] names unknown node 'nope'", id="edge"
        ),
        pytest.param(
            lambda: build(edges={"a": ["b", "nope"]}), r"unknown node 'nope'", id="edge-list"
        ),
        pytest.param(
            lambda: build(edges={"nope": "a"}),
            r"edges \(source\) names unknown node",
            id="edge-src",
        ),
        pytest.param(
            lambda: build(routes={"nope": route_to_b}),
            r"routes names unknown node 'nope'",
            id="route-key",
        ),
        pytest.param(
            # cast: untyped code; mypy rejects this
            lambda: build(routes={"a": cast("Callable[[Counter], str]", "b")}),
            r"routes\['a'\] must be a function",
            id="route-not-callable",
        ),
        pytest.param(
            lambda: build(interrupt_before=["nope"]),
            r"interrupt_before names unknown node 'nope'",
            id="interrupt-before",
        ),
        pytest.param(
            lambda: build(interrupt_after=["nope"]),
            r"interrupt_after names unknown node 'nope'",
            id="interrupt-after",
        ),
        pytest.param(lambda: build(nodes=[a, a]), r"two nodes are named 'a'", id="duplicate"),
        pytest.param(lambda: build(nodes=[]), r"no nodes", id="empty"),
        pytest.param(
            # cast: untyped code; mypy rejects this
            lambda: build(nodes=[a, cast("Node[Counter]", foreign)]),
            r"node 'foreign' belongs to schema Other, not to this runner's schema Counter",
            id="foreign-node",
        ),
        pytest.param(
            # cast: untyped code; mypy rejects this
            lambda: build(nodes=[a, cast("Node[Counter]", print)]),
            r"is not a Node",
            id="not-a-node",
        ),
        pytest.param(
            lambda: build(edges={"a": "b"}, routes={"a": route_to_b}),
            r"node 'a' has both an edge and a route",
            id="edge-and-route",
        ),
        pytest.param(
            # cast: untyped code; mypy rejects a checkpointer of another schema
            lambda: build(checkpointer=cast("Checkpointer[Counter]", InMemoryCheckpointer(Other))),
            r"the checkpointer stores Other, not this runner's schema Counter",
            id="foreign-checkpointer",
        ),
    ],
)
def test_a_graph_that_cannot_run(make: Callable[[], Runner[Counter]], message: str) -> None:
    with pytest.raises(GraphError, match=message) as info:
        make()
    assert isinstance(info.value, TypedflowError)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: build(step_limit=0), r"step_limit .* got 0", id="step-limit-0"),
        pytest.param(lambda: build(step_limit=-1), r"step_limit .* got -1", id="step-limit-neg"),
        pytest.param(lambda: build(concurrency=0), r"concurrency .* got 0", id="concurrency-0"),
        pytest.param(lambda: build(concurrency=-2), r"concurrency .* got -2", id="concurrency-neg"),
        pytest.param(lambda: build(node_timeout=0), r"node_timeout .* got 0", id="timeout-0"),
        pytest.param(
            lambda: build(node_timeout=-1.5), r"node_timeout .* got -1.5", id="timeout-neg"
        ),
    ],
)
def test_a_limit_out_of_range_is_a_plain_value_error(
    make: Callable[[], Runner[Counter]], message: str
) -> None:
    # An argument out of range is the caller's mistake, not the graph's: the README promises
    # the builtin ValueError for it.
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert type(info.value) is ValueError


def test_unknown_names_list_the_known_nodes() -> None:
    with pytest.raises(GraphError) as info:
        build(entry="c")
    assert "['a', 'b']" in str(info.value)


def test_a_step_limit_override_below_one_is_refused() -> None:
    runner = build()
    with pytest.raises(ValueError, match="step_limit") as info:
        runner.invoke(Counter(), step_limit=0)
    assert type(info.value) is ValueError


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("__end__", "reserved", id="end"),
        pytest.param("__secret", "reserved", id="dunder"),
        pytest.param("", "cannot name", id="empty"),
    ],
)
def test_reserved_or_empty_node_names(name: str, message: str) -> None:
    def fn(state: Counter) -> Inc:
        return Inc()

    with pytest.raises(GraphError, match=message):
        Counter.node(name=name)(fn)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(GraphError, match="pass name="):
        Counter.node(lambda s: Inc())
    assert Counter.node(name="inc")(lambda s: Inc()).name == "inc"


def test_a_node_that_is_not_callable() -> None:
    with pytest.raises(GraphError, match="must be a function"):
        Counter.node(cast("Any", 42))  # cast: untyped callers may pass anything
