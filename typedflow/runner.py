"""``Runner[S]``: runs a graph of nodes over a state schema, step by step, with checkpoints.

A run is a sequence of **super-steps**. The runner keeps a pending queue of
node names. A step runs every node pending at its start against the same state
(async nodes concurrently, at most ``concurrency`` at once), then applies their
updates through the schema's reducer in queue order, whatever order they
finished in, then computes the next queue from each node's ``Goto``, its
conditional route or its static edges (in queue order; a node named twice runs
once). A checkpoint is saved after every step; step 0 holds the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, cast

import attrs

from typedflow import _clock
from typedflow._engine import (
    Outcome,
    Result,
    apply_update,
    failure_of,
    node_failed,
    outcome_of,
)
from typedflow._typing import S2, HasSchema, S, S_co, U, type_name
from typedflow.checkpoint.base import (
    RESUME_WRITER,
    Checkpoint,
    Checkpointer,
    HistoryCheckpointer,
    Metadata,
    NodeWrite,
    check_thread_id,
    freeze_metadata,
)
from typedflow.errors import (
    ConflictError,
    GraphError,
    NodeTimeoutError,
    ReducerError,
    RoutingError,
    RunError,
    StepLimitError,
    UpdateTypeError,
)
from typedflow.nodes import END, Node
from typedflow.schema import schema_info

if TYPE_CHECKING:
    from typedflow.schema import SchemaInfo

__all__ = ["Completed", "Interrupted", "Route", "RunResult", "Runner"]

logger = logging.getLogger(__name__)

Route: TypeAlias = Callable[[S], str | Sequence[str]]
"""A conditional route: a function of the state after the step that returns the
next node's name, several names, or ``END``."""


@attrs.frozen(kw_only=True)
class Completed(Generic[S_co]):
    """A run that finished: nothing is pending."""

    thread_id: str
    """The thread that ran."""
    state: S_co
    """The final state."""
    checkpoint: Checkpoint[S_co]
    """The last checkpoint of the run."""
    steps: int
    """How many steps this call ran."""


@attrs.frozen(kw_only=True)
class Interrupted(Generic[S_co]):
    """A run that stopped for a human; resume it with ``Runner.resume``."""

    thread_id: str
    """The thread that stopped."""
    state: S_co
    """The state at the interrupt."""
    checkpoint: Checkpoint[S_co]
    """The checkpoint saved at the interrupt; its ``next`` is what runs on resume."""
    steps: int
    """How many steps this call ran."""
    reason: str
    """Why the run stopped: ``before node 'x'``, ``after node 'x'``, or a node's own reason."""


# Real aliases, not strings: users subscript them at run time too (``RunResult[MyState]``).
RunResult: TypeAlias = Completed[S] | Interrupted[S]
"""What a run returns: narrow it with ``isinstance(result, Interrupted)``."""


# Not frozen: one is made for every step, and frozen attrs classes are slower to build.
@attrs.define
class _RunNodes:
    """A request from the step logic to its driver: run these nodes on this state."""

    state: Any
    names: tuple[str, ...]
    thread_id: str
    step: int


@attrs.define
class _Halted:
    """A step that could not complete: the run saves its checkpoint, then raises its error
    (or, for a node's interrupt, stops)."""

    checkpoint: Checkpoint[Any]
    error: BaseException | None
    node: str
    """The node to name in the log."""
    what: str
    """What went wrong, for the log."""


@attrs.define
class _Stepped:
    """What a step that completed came to, before the run makes it a checkpoint."""

    state: Any
    next: tuple[str, ...]
    writes: tuple[NodeWrite[object], ...]
    reason: str | None
    """Why the run stops after this step (interrupt_before / interrupt_after), else None."""
    duration: float


@attrs.frozen
class _Done:
    """The last event of a run: its result."""

    result: Completed[Any] | Interrupted[Any]


_Request: TypeAlias = "_RunNodes | Checkpoint[Any]"
"""What the step logic asks of its driver: run nodes, or save (and emit) a checkpoint."""
_Core: TypeAlias = Generator[
    _Request, "dict[str, Result] | None", "Completed[Any] | Interrupted[Any]"
]


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class Runner(Generic[S]):
    """Runs nodes of state schema ``S`` and saves a checkpoint after every step.

    Args:
        schema: The state schema class.
        nodes: The graph's nodes (made with ``@Schema.node``); names must be unique.
        entry: The node(s) of the first step.
        edges: Static edges: node name to the node(s) that follow it (or ``END``).
        routes: Conditional routes: node name to a function of the state after the
            step returning the next node name(s) or ``END``. A node has an edge
            or a route, not both; a node with neither ends its branch unless it
            returns ``Goto``.
        checkpointer: Where checkpoints are saved; None keeps nothing (no resume).
        interrupt_before: Stop before a step that would run any of these nodes.
        interrupt_after: Stop after a step that ran any of these nodes.
        step_limit: The most steps one call (invoke or resume) may run.
        concurrency: The most async nodes of one step running at once.
        node_timeout: Seconds an async node may run before it fails with
            NodeTimeoutError (sync nodes cannot be stopped and are not timed out).

    Raises:
        GraphError: the graph cannot run (unknown, duplicate or missing nodes, ...).
        SchemaError: the schema cannot be used.
        ValueError: ``step_limit``, ``concurrency`` or ``node_timeout`` is out of range.
    """

    def __init__(
        self,
        schema: type[S],
        *,
        nodes: Sequence[Node[S]],
        entry: str | Sequence[str],
        edges: Mapping[str, str | Sequence[str]] | None = None,
        routes: Mapping[str, Callable[[S], str | Sequence[str]]] | None = None,
        checkpointer: Checkpointer[S] | None = None,
        interrupt_before: Collection[str] = (),
        interrupt_after: Collection[str] = (),
        step_limit: int = 100,
        concurrency: int = 16,
        node_timeout: float | None = None,
    ) -> None:
        self._schema = schema
        self._info: SchemaInfo = schema_info(schema)
        self._nodes: dict[str, Node[S]] = {}
        for node in nodes:
            if not isinstance(node, Node):
                raise GraphError(
                    f"{node!r} is not a Node: "
                    f"decorate the function with @{schema.__qualname__}.node"
                )
            if node.schema is not schema:
                raise GraphError(
                    f"node {node.name!r} belongs to schema {node.schema.__qualname__}, "
                    f"not to this runner's schema {schema.__qualname__}"
                )
            if node.name in self._nodes:
                raise GraphError(f"two nodes are named {node.name!r}: node names must be unique")
            self._nodes[node.name] = node
        if not self._nodes:
            raise GraphError("the graph has no nodes: pass nodes=[...]")
        self._entry = _names(entry)
        if not self._entry:
            raise GraphError("entry names no node: pass entry='node name'")
        self._check_names(self._entry, "entry")
        self._edges = {k: _names(v) for k, v in (edges or {}).items()}
        self._routes: dict[str, Callable[[S], str | Sequence[str]]] = dict(routes or {})
        for src, targets in self._edges.items():
            self._check_names((src,), "edges (source)")
            self._check_names(targets, f"edges[{src!r}]", allow_end=True)
        for src, route in self._routes.items():
            self._check_names((src,), "routes")
            if src in self._edges:
                raise GraphError(f"node {src!r} has both an edge and a route: give it one of them")
            if not callable(route):
                raise GraphError(f"routes[{src!r}] must be a function of the state, got {route!r}")
        self._interrupt_before = frozenset(interrupt_before)
        self._interrupt_after = frozenset(interrupt_after)
        self._check_names(tuple(self._interrupt_before), "interrupt_before")
        self._check_names(tuple(self._interrupt_after), "interrupt_after")
        # Limits out of range are argument errors (ValueError), not graph errors.
        _check_step_limit(step_limit)
        if concurrency < 1:
            raise ValueError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}"
            )
        if node_timeout is not None and not node_timeout > 0:
            raise ValueError(
                f"node_timeout must be a positive number of seconds, got {node_timeout!r}"
            )
        if checkpointer is not None and checkpointer.schema is not schema:
            raise GraphError(
                f"the checkpointer stores {checkpointer.schema.__qualname__}, "
                f"not this runner's schema {schema.__qualname__}"
            )
        self._checkpointer = checkpointer
        self._async_nodes = frozenset(name for name, node in self._nodes.items() if node.is_async)
        self._step_limit = step_limit
        self._concurrency = concurrency
        self._node_timeout = node_timeout

    def _check_names(self, names: tuple[str, ...], where: str, *, allow_end: bool = False) -> None:
        for name in names:
            if allow_end and name == END:
                continue
            if name not in self._nodes:
                raise GraphError(
                    f"{where} names unknown node {name!r}; the nodes are {sorted(self._nodes)}"
                )

    @property
    def schema(self) -> type[S]:
        """The state schema this runner runs."""
        return self._schema

    @property
    def _schema_applies(self) -> type[S]:
        # The schema again, for the self type of resume() and fork(); see HasSchema.
        return self._schema

    @property
    def checkpointer(self) -> Checkpointer[S] | None:
        """Where this runner saves checkpoints, if anywhere."""
        return self._checkpointer

    # ----- public entry points -------------------------------------------------------------

    def invoke(
        self,
        input: S,
        *,
        thread_id: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> Completed[S] | Interrupted[S]:
        """Run a new thread from ``input`` until it finishes or is interrupted.

        Raises:
            ConflictError: ``thread_id`` exists already (resume or fork it instead).
            RunError: a node, the reducer or a route failed, or the step limit was reached.
            TypeError: ``input`` is not of this runner's schema, or ``thread_id`` is not a
                non-empty str.
            ValueError: ``step_limit`` is below 1.
        """
        core = self._start(input, thread_id, metadata, step_limit, streaming=False)
        return self._finish(self._events(core))

    async def ainvoke(
        self,
        input: S,
        *,
        thread_id: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> Completed[S] | Interrupted[S]:
        """:meth:`invoke` for asyncio code: async nodes of a step run concurrently."""
        core = self._start(input, thread_id, metadata, step_limit, streaming=False)
        async for event in self._aevents(core):
            if isinstance(event, _Done):
                return event.result
        raise AssertionError("unreachable: every run ends with _Done")  # pragma: no cover

    def stream(
        self,
        input: S,
        *,
        thread_id: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> Iterator[Checkpoint[S]]:
        """Run like :meth:`invoke`, yielding each step's checkpoint as it is saved."""
        for event in self._events(
            self._start(input, thread_id, metadata, step_limit, streaming=True)
        ):
            if not isinstance(event, _Done):
                yield event

    async def astream(
        self,
        input: S,
        *,
        thread_id: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> AsyncIterator[Checkpoint[S]]:
        """:meth:`stream` for asyncio code."""
        core = self._start(input, thread_id, metadata, step_limit, streaming=True)
        async for event in self._aevents(core):
            if not isinstance(event, _Done):
                yield event

    def resume(
        self: HasSchema[U, S2],
        thread_id: str,
        *,
        update: U | None = None,
        from_step: int | None = None,
        as_thread: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> Completed[S2] | Interrupted[S2]:
        """Continue a thread from its latest checkpoint (or from ``from_step``).

        Args:
            thread_id: The thread to continue.
            update: Applied through the reducer before the pending step runs,
                saved as a step of its own (a write of ``__resume__``).
            from_step: Continue from this step instead of the latest. Unless it
                is the latest, the run continues in a new thread ``as_thread``
                forked at that step (the history of a thread is never rewritten).
            as_thread: The new thread id for ``from_step``.
            metadata: Saved with every checkpoint of this call.
            step_limit: Overrides the runner's step limit for this call.

        Raises:
            ThreadNotFoundError / StepNotFoundError: no such thread or step.
            ConflictError: ``from_step`` is not the latest and no ``as_thread`` was given,
                or another runner wrote the thread meanwhile.
            UpdateTypeError / ReducerError: the update is of the wrong type or cannot be applied.
            TypeError: ``thread_id`` or ``as_thread`` is not a str.
            ValueError: ``step_limit`` is below 1.
        """
        this = cast("Runner[Any]", self)  # the protocol only recovers U and S2 from the receiver
        core = this._resume(thread_id, update, from_step, as_thread, metadata, step_limit)
        return cast("Completed[S2] | Interrupted[S2]", this._finish(this._events(core)))

    async def aresume(
        self: HasSchema[U, S2],
        thread_id: str,
        *,
        update: U | None = None,
        from_step: int | None = None,
        as_thread: str | None = None,
        metadata: Metadata | None = None,
        step_limit: int | None = None,
    ) -> Completed[S2] | Interrupted[S2]:
        """:meth:`resume` for asyncio code."""
        this = cast("Runner[Any]", self)  # see resume()
        core = this._resume(thread_id, update, from_step, as_thread, metadata, step_limit)
        async for event in this._aevents(core):
            if isinstance(event, _Done):
                return cast("Completed[S2] | Interrupted[S2]", event.result)
        raise AssertionError("unreachable: every run ends with _Done")  # pragma: no cover

    def fork(
        self: HasSchema[U, S2],
        thread_id: str,
        step: int,
        new_thread_id: str,
        *,
        update: U | None = None,
        metadata: Metadata | None = None,
    ) -> Checkpoint[S2]:
        """Fork a thread at a step into a new thread (see ``HistoryCheckpointer.fork``)."""
        this = cast("Runner[Any]", self)  # see resume()
        return cast(
            "Checkpoint[S2]",
            this._history().fork(thread_id, step, new_thread_id, update=update, metadata=metadata),
        )

    # ----- the step logic, written once for both drivers ------------------------------------

    def _history(self) -> HistoryCheckpointer[S]:
        cp = self._saver()
        if not isinstance(cp, HistoryCheckpointer):
            raise GraphError(
                f"{type(cp).__qualname__} keeps only the latest checkpoint; "
                "use a HistoryCheckpointer to fork or resume from a past step"
            )
        return cp

    def _saver(self) -> Checkpointer[S]:
        if self._checkpointer is None:
            raise GraphError(
                "this runner has no checkpointer: pass checkpointer=... to resume or fork runs"
            )
        return self._checkpointer

    def _start(
        self,
        input: S,
        thread_id: str | None,
        metadata: Metadata | None,
        step_limit: int | None,
        *,
        streaming: bool,
    ) -> _Core:
        if not isinstance(input, self._schema):
            raise TypeError(
                f"the input must be a {self._schema.__qualname__}, got {type(input).__qualname__}"
            )
        tid = thread_id if thread_id is not None else _clock.new_thread_id()
        check_thread_id("thread_id", tid)  # once per run: ids often come from JSON
        if not tid:
            raise TypeError(f"thread_id must be a non-empty str, got {tid!r}")
        meta = freeze_metadata(metadata or {})  # once per run, not once per checkpoint
        before = [n for n in self._entry if n in self._interrupt_before]
        cp0: Checkpoint[S] = Checkpoint(
            thread_id=tid,
            step=0,
            state=input,
            next=self._entry,
            status="interrupted" if before else "ok",
            reason=_before_reason(before),
            metadata=meta,
        )
        # Without a checkpointer or a stream, nobody sees the checkpoints of the steps between
        # the input and the result, so the run does not make them.
        every_step = streaming or self._checkpointer is not None
        return self._run_from(cp0, meta, self._limit(step_limit), fresh=True, every_step=every_step)

    def _limit(self, step_limit: int | None) -> int:
        if step_limit is None:
            return self._step_limit
        _check_step_limit(step_limit)
        return step_limit

    def _resume(
        self,
        thread_id: str,
        update: object | None,
        from_step: int | None,
        as_thread: str | None,
        metadata: Metadata | None,
        step_limit: int | None,
    ) -> _Core:
        check_thread_id("thread_id", thread_id)
        if as_thread is not None:
            check_thread_id("as_thread", as_thread)
        limit = self._limit(step_limit)
        saver = self._saver()
        if from_step is not None:
            history = self._history()
            origin = history.load_at(thread_id, from_step)
            latest = history.load(thread_id)
            cp: Checkpoint[S]
            if as_thread is not None:
                cp = origin  # forked below, once the update is known to apply
            elif origin.step == latest.step:
                cp = latest
            else:
                raise ConflictError(
                    thread_id,
                    from_step + 1,
                    latest.step,
                    hint=(
                        f"a thread's history is never rewritten; to continue from step "
                        f"{from_step!r}, pass as_thread='<new id>' to fork into a new thread id"
                    ),
                )
        else:
            if as_thread is not None:
                raise GraphError("as_thread= goes with from_step=: name the step to fork from")
            cp = saver.load(thread_id)
        # The thread the run continues in: as_thread (only given with from_step) is a fork.
        tid = as_thread if as_thread is not None else cp.thread_id
        state = cp.state
        if update is not None:
            if not self._info.check_update(update):
                raise UpdateTypeError(
                    f"the resume update {update!r} (type {type(update).__qualname__}) of thread "
                    f"{tid!r} at step {cp.step + 1} is not of the update type "
                    f"{type_name(self._info.update_type)} of {self._schema.__qualname__}; "
                    "nothing was applied or stored: resume with an update of that type, or none",
                    thread_id=tid,
                    step=cp.step + 1,
                    node=RESUME_WRITER,
                )
            # Applied before a fork is stored, so that an update the reducer refuses leaves
            # no fork behind.
            state = apply_update(
                cp.state, update, thread_id=tid, step=cp.step + 1, node=RESUME_WRITER
            )
        if as_thread is not None:
            cp = self._history().fork(thread_id, cp.step, as_thread, metadata=metadata)
        meta = freeze_metadata(metadata) if metadata is not None else cp.metadata
        if update is not None:
            cp = Checkpoint(
                thread_id=cp.thread_id,
                step=cp.step + 1,
                state=state,
                next=cp.next,
                writes=(NodeWrite(node=RESUME_WRITER, updates=(update,)),),
                pending=cp.pending,
                metadata=meta,
            )
            return self._run_from(cp, meta, limit, fresh=True, stop_if_interrupted=False)
        if cp.status == "interrupted" and not cp.next:
            # Interrupted after the last node: resuming finishes the run, and the thread's
            # latest checkpoint must say so (a closing step that runs nothing).
            cp = Checkpoint(
                thread_id=cp.thread_id, step=cp.step + 1, state=cp.state, next=(), metadata=meta
            )
            return self._run_from(cp, meta, limit, fresh=True)
        return self._run_from(cp, meta, limit, fresh=False)

    def _run_from(
        self,
        cp: Checkpoint[S],
        meta: Metadata,
        limit: int,
        *,
        fresh: bool,
        stop_if_interrupted: bool = True,
        every_step: bool = True,
    ) -> _Core:
        if fresh:
            yield cp
            if stop_if_interrupted and cp.status == "interrupted":
                return self._interrupted(cp, 0)
        tid = cp.thread_id
        step, state, queue = cp.step, cp.state, cp.next
        kept: dict[str, NodeWrite[object]] = {w.node: w for w in cp.pending}
        steps = 0
        while queue:
            if steps >= limit:
                raise StepLimitError(
                    f"thread {tid!r} reached the step limit of {limit} at step "
                    f"{step} with {list(queue)} still pending; step {step} is saved: "
                    "check the routes for a loop, or resume with a higher step_limit",
                    thread_id=tid,
                    step=step,
                    limit=limit,
                )
            step += 1
            steps += 1
            # The step is inlined here rather than a sub-generator: this loop is the hot path.
            started = _clock.perf_counter()
            to_run = tuple(n for n in queue if n not in kept) if kept else queue
            results = yield _RunNodes(state, to_run, tid, step)
            done = self._settle(tid, step, state, queue, kept, results or {}, meta, started)
            if isinstance(done, _Halted):
                yield done.checkpoint
                if done.error is not None:
                    _log_failure(tid, step, done.node, done.what)
                    raise done.error
                return self._interrupted(done.checkpoint, steps)
            ran, state, queue, kept = queue, done.state, done.next, {}
            if every_step or not queue or done.reason is not None:
                cp = Checkpoint(
                    thread_id=tid,
                    step=step,
                    state=state,
                    next=queue,
                    status="interrupted" if done.reason is not None else "ok",
                    writes=done.writes,
                    reason=done.reason,
                    duration=done.duration,
                    metadata=meta,
                )
                yield cp
            if logger.isEnabledFor(logging.DEBUG):
                _log_step(tid, step, ran, done)
            if done.reason is not None:
                return self._interrupted(cp, steps)
        # The loop made a checkpoint of its last step: the one whose queue is empty.
        return Completed(thread_id=tid, state=state, checkpoint=cp, steps=steps)

    @staticmethod
    def _interrupted(cp: Checkpoint[S], steps: int) -> Interrupted[S]:
        return Interrupted(
            thread_id=cp.thread_id,
            state=cp.state,
            checkpoint=cp,
            steps=steps,
            reason=cp.reason or "interrupted",
        )

    def _settle(
        self,
        tid: str,
        step: int,
        state: S,
        queue: tuple[str, ...],
        kept: Mapping[str, NodeWrite[object]],
        results: Mapping[str, Result],
        meta: Metadata,
        started: float,
    ) -> _Stepped | _Halted:
        """What step ``step`` came to, from the writes ``kept`` from an earlier try of it
        and the ``results`` of the nodes that ran now."""
        got = [kept[n] if n in kept else results[n] for n in queue]
        writes = [r for r in got if isinstance(r, NodeWrite)]
        if len(writes) < len(got):
            others = [r for r in got if not isinstance(r, NodeWrite)]
            return _unfinished(tid, step, state, queue, writes, others, meta, started)
        after = state
        current = ""
        try:
            for w in writes:
                current = w.node
                for u in w.updates:
                    after = apply_update(after, u, thread_id=tid, step=step, node=current)
            successors: list[str] = []
            for w in writes:
                current = w.node
                for target in (
                    w.goto if w.goto is not None else self._successors(current, after, tid, step)
                ):
                    if target == END:
                        continue
                    if target not in self._nodes:
                        raise RoutingError(
                            f"node {current!r} routed to unknown node {target!r} (thread {tid!r}, "
                            f"step {step}); the nodes are {sorted(self._nodes)}",
                            thread_id=tid,
                            step=step,
                            node=current,
                        )
                    if target not in successors:
                        successors.append(target)
        except (ReducerError, RoutingError) as exc:
            halted = Checkpoint(
                thread_id=tid,
                step=step,
                state=state,
                next=queue,
                status="error",
                pending=tuple(writes),
                failures=(failure_of(current, exc),),
                reason=str(exc),
                duration=_clock.perf_counter() - started,
                metadata=meta,
            )
            return _Halted(halted, exc, current, type(exc).__name__)
        return _Stepped(
            state=after,
            next=tuple(successors),
            writes=tuple(writes),
            reason=(
                self._stop_reason(writes, successors)
                if self._interrupt_after or self._interrupt_before
                else None
            ),
            duration=_clock.perf_counter() - started,
        )

    def _stop_reason(self, writes: list[NodeWrite[object]], successors: list[str]) -> str | None:
        """Why the run stops after a step (interrupt_after / interrupt_before), if it does."""
        reasons = [f"after node {w.node!r}" for w in writes if w.node in self._interrupt_after]
        before = [n for n in successors if n in self._interrupt_before]
        if before:
            reasons.append(_before_reason(before) or "")
        return "; ".join(reasons) if reasons else None

    def _successors(self, node: str, state: S, tid: str, step: int) -> tuple[str, ...]:
        route = self._routes.get(node)
        if route is None:
            return self._edges.get(node, ())
        try:
            target = route(state)
        except Exception as exc:
            raise RoutingError(
                f"the route of node {node!r} raised {type(exc).__name__}: {exc} "
                f"(thread {tid!r}, step {step})",
                thread_id=tid,
                step=step,
                node=node,
            ) from exc
        if isinstance(target, str):
            return (target,)
        if isinstance(target, list | tuple) and all(isinstance(t, str) for t in target):
            return tuple(target)
        raise RoutingError(
            f"the route of node {node!r} returned {target!r}; a route returns a node name, "
            f"a list of names, or END (thread {tid!r}, step {step})",
            thread_id=tid,
            step=step,
            node=node,
        )

    # ----- drivers ---------------------------------------------------------------------------

    def _finish(self, events: Iterator[Checkpoint[S] | _Done]) -> Completed[S] | Interrupted[S]:
        for event in events:
            if isinstance(event, _Done):
                return event.result
        raise AssertionError("unreachable: every run ends with _Done")  # pragma: no cover

    def _events(self, core: _Core) -> Iterator[Checkpoint[S] | _Done]:
        loop: asyncio.AbstractEventLoop | None = None
        saver = self._checkpointer
        try:
            response: dict[str, Result] | None = None
            while True:
                try:
                    request = core.send(response)
                except StopIteration as stop:
                    if saver is not None:
                        saver.flush()  # a run that stops is durable, whatever the durability mode
                    yield _Done(stop.value)
                    return
                except RunError:
                    if saver is not None:
                        saver.flush()  # the error checkpoint must survive too
                    raise
                if isinstance(request, _RunNodes):
                    if self._async_nodes.isdisjoint(request.names):
                        response = {n: self._run_sync(n, request) for n in request.names}
                    else:
                        if loop is None:
                            loop = asyncio.new_event_loop()
                        response = loop.run_until_complete(self._run_async(request))
                else:
                    response = None
                    if saver is not None:
                        saver.save(request)
                    yield request
        finally:
            if loop is not None:
                loop.close()

    async def _aevents(self, core: _Core) -> AsyncIterator[Checkpoint[S] | _Done]:
        saver = self._checkpointer
        response: dict[str, Result] | None = None
        while True:
            try:
                request = core.send(response)
            except StopIteration as stop:
                if saver is not None:
                    await saver.aflush()  # see _events
                yield _Done(stop.value)
                return
            except RunError:
                if saver is not None:
                    await saver.aflush()
                raise
            if isinstance(request, _RunNodes):
                if self._async_nodes.isdisjoint(request.names):
                    response = {n: self._run_sync(n, request) for n in request.names}
                else:
                    response = await self._run_async(request)
            else:
                response = None
                if saver is not None:
                    await saver.asave(request)
                yield request

    def _run_sync(self, name: str, request: _RunNodes) -> Result:
        t0 = _clock.perf_counter()
        try:
            value = self._nodes[name].fn(request.state)
        except Exception as exc:  # noqa: BLE001  # any failure of user code is the node's failure
            ran = _clock.perf_counter() - t0
            return node_failed(name, exc, ran, thread_id=request.thread_id, step=request.step)
        return outcome_of(
            name,
            value,
            _clock.perf_counter() - t0,
            self._info,
            thread_id=request.thread_id,
            step=request.step,
        )

    async def _run_async(self, request: _RunNodes) -> dict[str, Result]:
        async_names = dict.fromkeys(n for n in request.names if n in self._async_nodes)
        # Fewer nodes than the limit never wait on a semaphore: they need none.
        limit: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.Semaphore(self._concurrency)
            if len(async_names) > self._concurrency
            else contextlib.nullcontext()
        )

        async def run(name: str) -> Result:
            async with limit:
                t0 = _clock.perf_counter()
                # Without a node_timeout there is no deadline: asyncio.timeout(None) would
                # never expire, but it costs a context manager for every node of every step.
                deadline = (
                    None if self._node_timeout is None else asyncio.timeout(self._node_timeout)
                )
                try:
                    coro = self._nodes[name].fn(request.state)
                    aw = cast("Awaitable[object]", coro)  # is_async nodes return awaitables
                    if deadline is None:
                        value = await aw
                    else:
                        async with deadline:
                            value = await aw
                except TimeoutError as exc:
                    ran = _clock.perf_counter() - t0
                    if deadline is None or not deadline.expired():
                        # The node raised TimeoutError itself: an ordinary node failure.
                        tid, step = request.thread_id, request.step
                        return node_failed(name, exc, ran, thread_id=tid, step=step)
                    err = NodeTimeoutError(
                        f"node {name!r} ran longer than node_timeout={self._node_timeout}s "
                        f"(thread {request.thread_id!r}, step {request.step}); the checkpoint "
                        f"of step {request.step - 1} is intact: resume to run it again",
                        thread_id=request.thread_id,
                        step=request.step,
                        node=name,
                    )
                    err.__cause__ = exc
                    return Outcome(name, error=err, failure=failure_of(name, err, ran))
                except asyncio.CancelledError as exc:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise  # the run itself is being cancelled: let it stop
                    ran = _clock.perf_counter() - t0
                    tid, step = request.thread_id, request.step
                    return node_failed(name, exc, ran, thread_id=tid, step=step)  # type: ignore[arg-type]  # CancelledError raised inside the node is its failure
                except Exception as exc:  # noqa: BLE001  # see _run_sync
                    ran = _clock.perf_counter() - t0
                    tid, step = request.thread_id, request.step
                    return node_failed(name, exc, ran, thread_id=tid, step=step)
                return outcome_of(
                    name,
                    value,
                    _clock.perf_counter() - t0,
                    self._info,
                    thread_id=request.thread_id,
                    step=request.step,
                )

        # Each async node runs in a task of its own: in its own copy of the context, and
        # cancellable alone.
        tasks = {name: asyncio.ensure_future(run(name)) for name in async_names}
        out = {n: self._run_sync(n, request) for n in request.names if n not in async_names}
        if tasks:
            try:
                if len(tasks) == 1:
                    # Awaiting the task itself saves gather's extra future: one event loop
                    # round per step.
                    (task,) = tasks.values()
                    await task
                else:
                    await asyncio.gather(*tasks.values())
            except BaseException:
                for task in tasks.values():
                    task.cancel()
                raise
            for name, task in tasks.items():
                out[name] = task.result()
        return out


def _check_step_limit(step_limit: int) -> None:
    if step_limit < 1:
        raise ValueError(f"step_limit must be a whole number of at least 1, got {step_limit!r}")


def _unfinished(
    tid: str,
    step: int,
    state: Any,
    queue: tuple[str, ...],
    writes: list[NodeWrite[object]],
    others: list[Outcome],
    meta: Metadata,
    started: float,
) -> _Halted:
    """A step in which a node failed or interrupted the run: it keeps the state, queues the
    same nodes again, and keeps the writes of the nodes that finished, so a resume runs
    only the rest."""
    failed = [o for o in others if o.error is not None]
    reason = (
        "; ".join(str(o.error) for o in failed)
        if failed
        else "; ".join(f"{o.node}: {o.interrupt.reason}" for o in others if o.interrupt)
    )
    halted: Checkpoint[Any] = Checkpoint(
        thread_id=tid,
        step=step,
        state=state,
        next=queue,
        status="error" if failed else "interrupted",
        pending=tuple(writes),
        failures=tuple(o.failure for o in failed if o.failure is not None),
        reason=reason,
        duration=_clock.perf_counter() - started,
        metadata=meta,
    )
    if failed:
        return _Halted(halted, failed[0].error, failed[0].node, "node failed")
    return _Halted(halted, None, "", "")


def _before_reason(names: list[str]) -> str | None:
    if not names:
        return None
    return "; ".join(f"before node {n!r}" for n in names)


def _log_step(thread_id: str, step: int, ran: tuple[str, ...], done: _Stepped) -> None:
    for w in done.writes:
        logger.debug(
            "thread %r step %d: node %r wrote %d update(s) in %.6fs",
            thread_id,
            step,
            w.node,
            len(w.updates),
            w.duration,
            extra={"thread_id": thread_id, "step": step, "node": w.node},
        )
    logger.debug(
        "thread %r step %d ran %s, next %s",
        thread_id,
        step,
        list(ran),
        list(done.next),
        extra={"thread_id": thread_id, "step": step, "nodes": list(ran)},
    )


def _log_failure(thread_id: str, step: int, node: str, what: str) -> None:
    logger.warning(
        "thread %r step %d: %s at node %r",
        thread_id,
        step,
        what,
        node,
        extra={"thread_id": thread_id, "step": step, "node": node},
    )
