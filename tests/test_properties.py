"""Property tests: serialization round trips, resume and fork over random graphs,
reducer laws, and merge order under random async completion order.

Strategies come from :mod:`tests.strategies`; the "everything" schema from
:mod:`tests.everything`. Float fields there may hold nan, so round trips are
compared with :func:`~tests.everything.exactly_equal` (``==`` with nan equal to
nan, and stricter than ``==`` about types, the sign of zero and UTC offsets).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import attrs
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.everything import Everything, EverythingUpdate, Message, Role, exactly_equal
from tests.strategies import (
    Disruption,
    GraphSpec,
    NodeSpec,
    checkpoints,
    disruptions,
    everything_states,
    everything_updates,
    graph_specs,
    int64s,
)
from typedflow import (
    END,
    UNSET,
    Checkpoint,
    Completed,
    Goto,
    InMemoryCheckpointer,
    Interrupt,
    Interrupted,
    Node,
    NodeError,
    ParentRef,
    Runner,
    SerializationError,
    StateSchema,
    StepLimitError,
)
from typedflow._serde import Serde
from typedflow.reducers import add, append, extend, merge, merge_by_key, replace, union

SERDE = Serde(Everything)

# -- 1. serialization round trips --------------------------------------------------------------


def assert_plain(data: object, path: str = "data") -> None:
    """Check that ``data`` is plain data as the serializer promises: dicts with str keys,
    lists, JSON scalars, and bytes, datetimes and dates."""
    if isinstance(data, dict):
        for key, value in data.items():
            assert isinstance(key, str), f"{path} has a key {key!r} that is not a str"
            assert_plain(value, f"{path}[{key!r}]")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            assert_plain(value, f"{path}[{i}]")
    else:
        assert isinstance(data, str | int | float | bool | bytes | dt.date | None), (
            f"{path} is {data!r}, of type {type(data).__qualname__}: not plain data"
        )


@given(everything_states())
@example(Everything(ratio=float("nan"), total=-0.0, flag=True, pair=(1, "x")))
def test_state_round_trip(state: Everything) -> None:
    data = SERDE.dump_state(state)
    assert_plain(data)
    loaded = SERDE.load_state(copy.deepcopy(data))
    assert exactly_equal(loaded, state), f"{loaded!r} != {state!r}"


@given(everything_updates())
@example(EverythingUpdate())
@example(EverythingUpdate(maybe=None, friend=None))
def test_update_round_trip(update: EverythingUpdate) -> None:
    data = SERDE.dump_update(update)
    assert_plain(data)
    assert isinstance(data, dict)
    # UNSET is "no change", stored as a missing key; None is a value and is kept.
    assert set(data) == {
        f.name for f in attrs.fields(EverythingUpdate) if getattr(update, f.name) is not UNSET
    }
    loaded = SERDE.load_update(copy.deepcopy(data))
    assert exactly_equal(loaded, update), f"{loaded!r} != {update!r}"


@given(checkpoints())
def test_checkpoint_round_trip(cp: Checkpoint[Everything]) -> None:
    data = SERDE.dump_checkpoint(cp)
    assert_plain(data)
    loaded = SERDE.load_checkpoint(copy.deepcopy(data))
    assert exactly_equal(loaded, cp), f"{loaded!r} != {cp!r}"
    assert all(isinstance(u, EverythingUpdate) for w in loaded.writes for u in w.updates)


def leaves(value: object, path: str) -> Iterable[tuple[str, tuple[object, ...], object]]:
    """Every scalar inside a state: its error path (``state.messages[3].role``), the keys
    that reach it in the plain data, and the value."""

    def walk(
        v: object, where: str, keys: tuple[object, ...]
    ) -> Iterable[tuple[str, tuple[object, ...], object]]:
        cls = type(v)
        if attrs.has(cls):
            for f in attrs.fields(cls):
                yield from walk(getattr(v, f.name), f"{where}.{f.name}", (*keys, f.name))
        elif isinstance(v, tuple | list):
            for i, item in enumerate(v):
                yield from walk(item, f"{where}[{i}]", (*keys, i))
        elif isinstance(v, dict):
            for k, item in v.items():
                yield from walk(item, f"{where}[{k!r}]", (*keys, k))
        elif not isinstance(v, frozenset):  # set items have no stable position to name
            yield where, keys, v

    return walk(value, path, ())


def wrong_value_for(value: object) -> object:
    """A value of another type than ``value``'s, that no lenient conversion turns into it."""
    if value is None:
        return ["not", "none"]
    if isinstance(value, str | Role):
        return 12345
    if isinstance(value, bool | int | float):
        return "12"
    return {"not": "a scalar"}


def corrupt(plain: dict[str, Any], keys: tuple[object, ...], wrong: object) -> None:
    """Put ``wrong`` at ``keys`` inside plain data, in place."""
    target: Any = plain
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = wrong


@pytest.mark.parametrize(
    ("keys", "wrong", "path"),
    [
        (("messages", 3, "role"), 7, "state.messages[3].role"),
        # Regressions: these once loaded silently, converted by str(), bool() or int().
        (("messages", 3, "text"), 5, "state.messages[3].text"),
        (("name",), {"a": 1}, "state.name"),
        (("flag",), "no", "state.flag"),
        (("count",), 7.5, "state.count"),
        (("ratio",), "1.5", "state.ratio"),
        (("pet", "name"), 0, "state.pet.name"),
        (("scores", "k"), True, "state.scores['k']"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_field(
    keys: tuple[object, ...], wrong: object, path: str
) -> None:
    state = Everything(
        messages=tuple(Message(str(i), Role.USER, "hi") for i in range(5)), scores={"k": 1}
    )
    plain = SERDE.dump_state(state)
    corrupt(plain, keys, wrong)
    with pytest.raises(SerializationError) as info:
        SERDE.load_state(plain)
    assert info.value.path == path
    assert path in str(info.value)


@given(state=everything_states(min_messages=1), data=st.data())
def test_corrupted_plain_data_names_the_field(state: Everything, data: st.DataObject) -> None:
    plain = SERDE.dump_state(state)
    where, keys, value = data.draw(st.sampled_from(list(leaves(state, "state"))), label="leaf")
    corrupt(plain, keys, wrong_value_for(value))
    with pytest.raises(SerializationError) as info:
        SERDE.load_state(plain)
    if value is None:
        # A None may stand for a nested object; a list in its place is reported at the
        # object's first field (``state.shape.origin.x``).
        path = info.value.path
        assert path == where or path.startswith(f"{where}."), str(info.value)
    else:
        assert info.value.path == where, str(info.value)


# -- 2. and 3. random graphs: resume and fork ------------------------------------------------------


@attrs.frozen
class Visit:
    """An update: a node's name and a value it computed from the state."""

    node: str
    """The node that wrote it."""
    value: int
    """A number derived from the state the node saw."""


@attrs.frozen
class Trace(StateSchema[Visit]):
    """A state whose reducer depends on the order of updates (a rolling hash)."""

    log: tuple[str, ...] = ()
    """Every applied update, oldest first."""
    acc: int = 0
    """A hash of the applied updates, in order."""
    counts: dict[str, int] = attrs.field(factory=dict)
    """How many updates each node wrote (a mutable value, so stores must copy it)."""

    def apply(self, update: Visit) -> Trace:
        return Trace(
            log=(*self.log, f"{update.node}:{update.value}"),
            acc=(self.acc * 31 + update.value + 7) % 1_000_003,
            counts={**self.counts, update.node: self.counts.get(update.node, 0) + 1},
        )


class PlannedFailure(Exception):
    """Raised by a node at a call the test planned."""


@attrs.define
class Calls:
    """Counts node calls and plays the planned failures and interrupts, once each."""

    fail_at: set[int] = attrs.field(factory=set)
    """Call numbers (from 1) that raise."""
    interrupt_at: set[int] = attrs.field(factory=set)
    """Call numbers that return ``Interrupt``."""
    total: int = 0
    """Calls so far."""
    per_node: Counter[str] = attrs.field(factory=Counter)
    """Calls so far, by node."""
    failed: Counter[str] = attrs.field(factory=Counter)
    """Calls that raised, by node."""
    interrupted: Counter[str] = attrs.field(factory=Counter)
    """Calls that returned ``Interrupt``, by node."""

    def enter(self, node: str) -> Interrupt | None:
        """Count a call; raise, or return an Interrupt, if this call was planned to."""
        self.total += 1
        self.per_node[node] += 1
        if self.total in self.fail_at:
            self.fail_at.discard(self.total)
            self.failed[node] += 1
            raise PlannedFailure(f"planned failure of {node} at call {self.total}")
        if self.total in self.interrupt_at:
            self.interrupt_at.discard(self.total)
            self.interrupted[node] += 1
            return Interrupt(f"planned interrupt of {node}")
        return None


def node_name(index: int) -> str:
    """The name of node ``index`` of a random graph."""
    return f"n{index}"


def pick(spec: NodeSpec, graph: GraphSpec, state: Trace) -> tuple[str, ...]:
    """The successors a route or Goto chooses: ``fan_out`` targets from a place set by the
    state, or END once the log holds ``graph.budget`` entries."""
    if len(state.log) >= graph.budget:
        return (END,)
    start = state.acc % len(spec.targets)
    chosen = [spec.targets[(start + i) % len(spec.targets)] for i in range(spec.fan_out)]
    return tuple(node_name(i) for i in chosen)


def visits(name: str, spec: NodeSpec, state: Trace) -> list[Visit]:
    """What a node of a random graph writes: ``spec.updates`` values derived from the state."""
    return [
        Visit(name, (state.acc * spec.salt + len(state.log) * 13 + j) % 10_007)
        for j in range(spec.updates)
    ]


def make_node(index: int, graph: GraphSpec, calls: Calls) -> Node[Trace]:
    """Node ``index`` of a random graph, sync or async, counting its calls in ``calls``."""
    spec = graph.nodes[index]
    name = node_name(index)

    def body(state: Trace) -> Goto[Visit] | list[Visit] | Interrupt:
        stop = calls.enter(name)
        if stop is not None:
            return stop
        out = visits(name, spec, state)
        if spec.kind == "goto":
            return Goto(pick(spec, graph, state), update=out)
        return out

    if spec.is_async:

        async def run_async(state: Trace) -> Goto[Visit] | list[Visit] | Interrupt:
            await asyncio.sleep(0)
            return body(state)

        return Trace.node(name=name)(run_async)
    return Trace.node(name=name)(body)


def route_of(spec: NodeSpec, graph: GraphSpec) -> Callable[[Trace], Sequence[str]]:
    """The conditional route of a ``route`` node."""

    def route(state: Trace) -> Sequence[str]:
        return pick(spec, graph, state)

    return route


def make_runner(
    graph: GraphSpec,
    store: InMemoryCheckpointer[Trace],
    calls: Calls,
    *,
    before: Iterable[int] = (),
    after: Iterable[int] = (),
) -> Runner[Trace]:
    """A runner for a random graph, interrupting before and after the given nodes."""
    count = len(graph.nodes)
    before = [i for i in before if i < count]
    after = [i for i in after if i < count]
    edges: dict[str, list[str]] = {}
    routes: dict[str, Callable[[Trace], Sequence[str]]] = {}
    for i, spec in enumerate(graph.nodes):
        if spec.kind == "edge" and spec.targets:
            edges[node_name(i)] = [node_name(t) for t in spec.targets]
        elif spec.kind == "route":
            routes[node_name(i)] = route_of(spec, graph)
    return Runner(
        Trace,
        nodes=[make_node(i, graph, calls) for i in range(count)],
        entry=[node_name(i) for i in graph.entry],
        edges=edges,
        routes=routes,
        checkpointer=store,
        interrupt_before=[node_name(i) for i in before],
        interrupt_after=[node_name(i) for i in after],
        step_limit=1000,
    )


def effective_history(
    store: InMemoryCheckpointer[Trace], thread_id: str
) -> list[tuple[tuple[str, ...], tuple[Visit, ...], Trace]]:
    """The steps that applied writes, oldest first: who wrote, what, and the state after.
    Error and interrupted-by-a-node checkpoints apply nothing and are left out, so an
    interrupted run and an uninterrupted one have the same effective history."""
    return [
        (tuple(w.node for w in cp.writes), tuple(u for w in cp.writes for u in w.updates), cp.state)
        for cp in reversed(store.history(thread_id))
        if cp.writes
    ]


def run_uninterrupted(
    graph: GraphSpec, start: Trace
) -> tuple[InMemoryCheckpointer[Trace], Calls, Trace]:
    """Run a random graph from ``start`` in one go; return its store, calls and final state."""
    store = InMemoryCheckpointer(Trace)
    calls = Calls()
    result = make_runner(graph, store, calls).invoke(start, thread_id="t")
    assert isinstance(result, Completed)
    return store, calls, result.state


CallResult: TypeAlias = "Completed[Trace] | Interrupted[Trace] | None"
"""What :func:`call` returns: the run's result, or None when it stopped with an error."""


def call(runner: Runner[Trace], use_async: bool, first: Trace | None, limit: int) -> CallResult:
    """Invoke (``first`` given) or resume thread "t"; None when it stopped with an error."""
    try:
        if use_async:
            if first is not None:
                return asyncio.run(runner.ainvoke(first, thread_id="t", step_limit=limit))
            return asyncio.run(runner.aresume("t", step_limit=limit))
        if first is not None:
            return runner.invoke(first, thread_id="t", step_limit=limit)
        return runner.resume("t", step_limit=limit)
    except NodeError as exc:
        if not isinstance(exc.__cause__, PlannedFailure):
            raise  # only the planned failures may happen
        return None
    except StepLimitError:
        return None


PARALLEL_FAILURE = GraphSpec(
    nodes=(
        NodeSpec(kind="edge", targets=(1, 2, 3), fan_out=1, updates=1, is_async=False, salt=3),
        NodeSpec(kind="edge", targets=(3,), fan_out=1, updates=2, is_async=True, salt=5),
        NodeSpec(kind="route", targets=(0, 1), fan_out=2, updates=1, is_async=False, salt=7),
        NodeSpec(kind="goto", targets=(0, 2), fan_out=1, updates=1, is_async=True, salt=11),
    ),
    entry=(0,),
    budget=9,
)
"""n0 fans out to n1, n2 and n3; the third call (one of these three) fails once."""


@given(graph=graph_specs(), start=st.integers(0, 50), plan=disruptions())
@example(
    graph=PARALLEL_FAILURE,
    start=1,
    plan=Disruption(
        interrupt_before=frozenset(),
        interrupt_after=frozenset(),
        fail_calls=frozenset({3}),
        interrupt_calls=frozenset({7}),
        step_limits=(1000,),
        use_async=False,
    ),
)
def test_resume_equals_uninterrupted(graph: GraphSpec, start: int, plan: Disruption) -> None:
    base_store, base_calls, expected = run_uninterrupted(graph, Trace(acc=start))

    store = InMemoryCheckpointer(Trace)
    calls = Calls(fail_at=set(plan.fail_calls), interrupt_at=set(plan.interrupt_calls))
    runner = make_runner(
        graph, store, calls, before=plan.interrupt_before, after=plan.interrupt_after
    )
    limits = plan.step_limits
    result = call(runner, plan.use_async, Trace(acc=start), limits[0])
    rounds = 0
    while not isinstance(result, Completed):
        rounds += 1
        assert rounds < 500, "the run does not finish"
        result = call(runner, plan.use_async, None, limits[rounds % len(limits)])

    for cp in store.history("t"):
        if cp.status != "ok":
            event(f"{cp.status} step of {'several nodes' if len(cp.next) > 1 else 'one node'}")
    event(f"resumed {min(rounds, 3)}{'+' if rounds > 3 else ''} times")
    assert result.state == expected
    assert effective_history(store, "t") == effective_history(base_store, "t")
    # A resume runs again only the nodes that raised or interrupted, never their siblings.
    assert calls.per_node == base_calls.per_node + calls.failed + calls.interrupted
    if graph == PARALLEL_FAILURE and plan.fail_calls == {3}:
        # The example really fails in the parallel step (n1, n2, n3), and interrupts later.
        assert set(calls.failed) <= {"n1", "n2", "n3"}
        assert calls.failed.total() == calls.interrupted.total() == 1


@given(graph=graph_specs(), start=st.integers(0, 50), data=st.data())
def test_fork_is_independent(graph: GraphSpec, start: int, data: st.DataObject) -> None:
    _, _, expected = run_uninterrupted(graph, Trace(acc=start))
    store = InMemoryCheckpointer(Trace)
    runner = make_runner(graph, store, Calls())
    # Stop the origin part-way (or not), fork it at a step it has reached.
    call(runner, False, Trace(acc=start), data.draw(st.integers(1, 6), label="origin step limit"))
    latest = store.load("t").step
    at = data.draw(st.integers(0, latest), label="fork step")
    update = data.draw(
        st.none() | st.builds(Visit, st.just("edit"), st.integers(0, 99)), label="fork update"
    )
    origin_at = store.load_at("t", at)
    origin_before = store.history("t")

    forked = runner.fork("t", at, "f", update=update)
    assert forked.parent == ParentRef(thread_id="t", step=at)
    assert forked.step == at
    assert forked.next == origin_at.next
    assert forked.state == (origin_at.state if update is None else origin_at.state.apply(update))
    # Whatever is done to the fork (its states mutated, its run resumed) leaves the origin alone.
    store.load("f").state.counts["mutated"] = 1
    finished = runner.resume("f")
    assert isinstance(finished, Completed)
    assert store.history("t") == origin_before
    if update is None:
        assert finished.state == expected

    fork_before = store.history("f")
    origin_done = runner.resume("t")
    assert isinstance(origin_done, Completed)
    assert origin_done.state == expected
    assert store.history("f") == fork_before
    # Only the fork's first checkpoint records the parent.
    assert [cp.parent for cp in reversed(fork_before)] == [forked.parent] + [None] * (
        len(fork_before) - 1
    )
    assert store.load_at("f", at) == forked


# -- 4. reducer laws ----------------------------------------------------------------------

small_tuples = st.lists(st.integers(-5, 5), max_size=5).map(tuple)
small_sets = st.frozensets(st.integers(-5, 5), max_size=5)
small_dicts = st.dictionaries(st.sampled_from("abcde"), st.integers(-5, 5), max_size=5)
keyed = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(-5, 5)), max_size=6).map(tuple)


def first_key(item: tuple[str, int]) -> str:
    """The key of a keyed item."""
    return item[0]


@given(small_tuples, small_tuples, small_tuples)
def test_extend_is_associative(a: tuple[int, ...], b: tuple[int, ...], c: tuple[int, ...]) -> None:
    assert extend(extend(a, b), c) == extend(a, b + c) == extend(a, extend(b, c))
    assert extend(a, ()) == a


@given(small_tuples, st.integers())
def test_append_adds_one_item_at_the_end(a: tuple[int, ...], x: int) -> None:
    out = append(a, x)
    assert len(out) == len(a) + 1
    assert out[:-1] == a
    assert out[-1] == x


@given(small_dicts, small_dicts)
def test_merge_is_last_write_wins(a: dict[str, int], b: dict[str, int]) -> None:
    out = merge(a, b)
    assert set(out) == set(a) | set(b)
    assert all(out[k] == b[k] for k in b)
    assert all(out[k] == a[k] for k in a if k not in b)
    assert merge(a, {}) == a
    assert merge({}, a) == a
    assert out is not a  # a new mapping: the field's old value is never changed


@given(small_sets, small_sets, small_sets)
def test_union_laws(a: frozenset[int], b: frozenset[int], c: frozenset[int]) -> None:
    assert union(a, b) == union(b, a)
    assert union(union(a, b), c) == union(a, union(b, c))
    assert union(a, a) == a
    assert union(a, ()) == a


@given(keyed, keyed)
def test_merge_by_key_upserts(
    current: tuple[tuple[str, int], ...], batch: tuple[tuple[str, int], ...]
) -> None:
    upsert = merge_by_key(first_key)
    base = upsert((), current)  # a field only ever holds what the reducer made: unique keys
    out = upsert(base, batch)
    keys = [k for k, _ in out]
    assert len(keys) == len(set(keys))
    assert keys == list(dict.fromkeys([k for k, _ in base] + [k for k, _ in batch]))
    latest = dict(base) | dict(batch)
    assert dict(out) == latest
    assert upsert(out, batch) == out  # re-applying the same batch changes nothing


@given(int64s, int64s, st.floats(allow_nan=False))
def test_add_zero_is_identity(n: int, m: int, x: float) -> None:
    assert add(n, 0) == n
    assert add(0, n) == n
    assert add(x, 0.0) == x
    assert add(n, m) == add(m, n)


@given(st.integers(), st.text())
def test_replace_returns_the_value(current: int, value: str) -> None:
    assert replace(current, value) == value
    assert replace(value, current) is current


@given(everything_states())
def test_apply_of_an_all_unset_update_changes_nothing(state: Everything) -> None:
    assert exactly_equal(state.apply(EverythingUpdate()), state)


EVERYTHING_REDUCERS: dict[str, Callable[[Any, Any], Any]] = {
    "count": add,
    "total": add,
    "log": append,
    "history": extend,
    "tags": union,
    "scores": merge,
    "messages": merge_by_key(lambda m: m.id),
}
"""The reducers Everything declares; every other field is replaced (written out here rather
than taken from ``typedflow.reducers.replace``, so that the fold is checked independently)."""


@given(everything_states(), everything_updates())
def test_apply_folds_each_set_field_with_its_reducer(
    state: Everything, update: EverythingUpdate
) -> None:
    after = state.apply(update)
    for f in attrs.fields(EverythingUpdate):
        value = getattr(update, f.name)
        before = getattr(state, f.name)
        reducer = EVERYTHING_REDUCERS.get(f.name, lambda _, new: new)
        want = before if value is UNSET else reducer(before, value)
        assert exactly_equal(getattr(after, f.name), want), f.name


# -- 5. merge order does not depend on async completion order ------------------------------


@attrs.define
class Release:
    """Lets the parallel workers of a step finish in a chosen order, one at a time."""

    order: tuple[str, ...]
    """The order in which the workers may finish."""
    finished: list[str] = attrs.field(factory=list)
    """The order in which they did finish."""
    started: dict[str, asyncio.Event] = attrs.field(factory=dict)
    """Set by a worker when it is running."""
    go: dict[str, asyncio.Event] = attrs.field(factory=dict)
    """Set by the controller when a worker may finish."""
    done: dict[str, asyncio.Event] = attrs.field(factory=dict)
    """Set by a worker as it returns."""
    controller: asyncio.Task[None] | None = None
    """The task that releases the workers, started by the first worker to run."""

    def __attrs_post_init__(self) -> None:
        for name in self.order:
            self.started[name] = asyncio.Event()
            self.go[name] = asyncio.Event()
            self.done[name] = asyncio.Event()

    def events(self, name: str) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
        """A worker's events; the first worker to ask starts the controller in its loop."""
        if self.controller is None:
            self.controller = asyncio.ensure_future(self.release())
        return self.started[name], self.go[name], self.done[name]

    async def release(self) -> None:
        for name in self.order:
            await self.started[name].wait()
        for name in self.order:
            self.go[name].set()
            await self.done[name].wait()


def fan_out_runner(
    width: int, release: Release | None, store: InMemoryCheckpointer[Trace]
) -> Runner[Trace]:
    """start -> ``width`` async workers in one step -> join; ``release`` orders their finish."""
    workers = [f"w{i}" for i in range(width)]

    @Trace.node
    def start(state: Trace) -> Visit:
        return Visit("start", state.acc + 1)

    def make_worker(i: int) -> Node[Trace]:
        name = workers[i]

        async def work(state: Trace) -> list[Visit]:
            out = [Visit(name, (state.acc * (i + 3) + j) % 997) for j in range(1 + i % 2)]
            if release is not None:
                started, go, done = release.events(name)
                started.set()
                await go.wait()
                release.finished.append(name)
                done.set()
            return out

        return Trace.node(name=name)(work)

    @Trace.node
    def join(state: Trace) -> Visit:
        return Visit("join", state.acc)

    return Runner(
        Trace,
        nodes=[start, join, *(make_worker(i) for i in range(width))],
        entry="start",
        edges={"start": workers, **dict.fromkeys(workers, "join")},
        checkpointer=store,
    )


@given(
    order=st.integers(2, 5).flatmap(lambda n: st.permutations([f"w{i}" for i in range(n)])),
    start=st.integers(0, 100),
    use_async=st.booleans(),
)
def test_merge_order_ignores_completion_order(
    order: list[str], start: int, use_async: bool
) -> None:
    width = len(order)
    base = InMemoryCheckpointer(Trace)
    expected = fan_out_runner(width, None, base).invoke(Trace(acc=start), thread_id="t")

    store = InMemoryCheckpointer(Trace)
    release = Release(tuple(order))
    runner = fan_out_runner(width, release, store)
    if use_async:
        result = asyncio.run(runner.ainvoke(Trace(acc=start), thread_id="t"))
    else:
        result = runner.invoke(Trace(acc=start), thread_id="t")

    assert release.finished == order  # the workers really finished in the drawn order
    assert result.state == expected.state
    parallel = store.load_at("t", 2)
    assert [w.node for w in parallel.writes] == [f"w{i}" for i in range(width)]  # queue order
    assert effective_history(store, "t") == effective_history(base, "t")
