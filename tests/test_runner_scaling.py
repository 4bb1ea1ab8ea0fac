"""A step costs the same however long the run grows: no per-step work over the whole state
or the whole history. Checked by counting copies and checkpoints, never by timing."""

from __future__ import annotations

import asyncio
import copy
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs
import pytest

from typedflow import (
    END,
    UNSET,
    Completed,
    InMemoryCheckpointer,
    Interrupted,
    ReducerError,
    Runner,
    StateSchema,
    Unset,
    _clock,
    field,
)
from typedflow._serde import is_immutable_type
from typedflow.reducers import add, append

STEPS = 40


@attrs.frozen
class Entry:
    """An immutable item of a growing log; counts how often anything deep-copies it."""

    text: str
    """The entry's text."""

    copies: ClassVar[list[int]] = [0]

    def __deepcopy__(self, memo: dict[int, Any]) -> Entry:
        Entry.copies[0] += 1
        return Entry(self.text)


@attrs.define
class Scratch:
    """A mutable item of a list field; counts how often it is deep-copied."""

    value: int
    """Any number."""

    copies: ClassVar[list[int]] = [0]

    def __deepcopy__(self, memo: dict[int, Any]) -> Scratch:
        Scratch.copies[0] += 1
        return Scratch(self.value)


@pytest.fixture(autouse=True)
def reset_counts() -> None:
    Entry.copies[0] = 0
    Scratch.copies[0] = 0


@attrs.frozen
class Tick:
    """An update: one more step and one more log entry."""

    n: int | Unset = UNSET
    log: Entry | Unset = UNSET


@attrs.frozen
class Grow(StateSchema[Tick]):
    """A deeply immutable state whose log grows by one entry per step."""

    n: int = field(default=0, reducer=add)
    log: tuple[Entry, ...] = field(default=(), reducer=append)


@attrs.frozen
class MixedGrow(StateSchema[Tick]):
    """The same growing log, next to a small mutable field."""

    n: int = field(default=0, reducer=add)
    log: tuple[Entry, ...] = field(default=(), reducer=append)
    scratch: list[Scratch] = field(factory=lambda: [Scratch(1), Scratch(2), Scratch(3)])


@Grow.node
def grow(state: Grow) -> Tick:
    return Tick(n=1, log=Entry(f"entry {state.n}"))


@MixedGrow.node(name="grow")
def mixed_grow(state: MixedGrow) -> Tick:
    return Tick(n=1, log=Entry(f"entry {state.n}"))


def grow_runner(store: InMemoryCheckpointer[Grow] | None = None) -> Runner[Grow]:
    return Runner(
        Grow,
        nodes=[grow],
        entry="grow",
        routes={"grow": lambda s: END if s.n >= STEPS else "grow"},
        checkpointer=store,
        step_limit=STEPS + 1,
    )


def test_an_immutable_state_is_saved_and_loaded_without_copies() -> None:
    store = InMemoryCheckpointer(Grow)
    streamed = list(grow_runner(store).stream(Grow(), thread_id="t"))
    assert len(streamed) == STEPS + 1
    assert all(store.load_at("t", cp.step) is cp for cp in streamed)
    assert [len(cp.state.log) for cp in store.history("t", limit=2)] == [STEPS, STEPS - 1]
    assert Entry.copies[0] == 0


def test_only_the_mutable_fields_of_a_state_are_copied() -> None:
    store = InMemoryCheckpointer(MixedGrow)
    runner = Runner(
        MixedGrow,
        nodes=[mixed_grow],
        entry="grow",
        routes={"grow": lambda s: END if s.n >= STEPS else "grow"},
        checkpointer=store,
        step_limit=STEPS + 1,
    )
    result = runner.invoke(MixedGrow(), thread_id="t")
    # The list is copied once per save (STEPS + 1 of them) and once per load, no more.
    assert Scratch.copies[0] == 3 * (STEPS + 1)
    loaded = store.load("t")
    assert Scratch.copies[0] == 3 * (STEPS + 2)
    # The growing tuple of immutable entries is shared by every saved copy, never walked.
    assert loaded.state.log is result.state.log
    assert Entry.copies[0] == 0
    # ... and the copies still protect what was saved.
    loaded.state.scratch.clear()
    result.state.scratch.append(Scratch(99))
    assert store.load("t").state.scratch == [Scratch(1), Scratch(2), Scratch(3)]


def test_a_copy_shares_the_immutable_fields_but_not_the_mutable_ones() -> None:
    store = InMemoryCheckpointer(MixedGrow)
    runner = Runner(MixedGrow, nodes=[mixed_grow], entry="grow", checkpointer=store)
    result = runner.invoke(MixedGrow(), thread_id="t")
    saved = store.load("t")
    assert saved.state == result.state
    assert saved.state.log is result.state.log
    assert saved.state.scratch is not result.state.scratch
    assert saved.writes == result.checkpoint.writes


def checkpoints_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the checkpoints made from now on (each takes its creation time once)."""
    made = [0]
    now = _clock.now

    def counting_now() -> Any:
        made[0] += 1
        return now()

    monkeypatch.setattr(_clock, "now", counting_now)
    return made


def test_a_run_without_checkpointer_makes_only_the_checkpoints_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = checkpoints_made(monkeypatch)
    result = grow_runner().invoke(Grow(), thread_id="t")
    assert isinstance(result, Completed)
    assert made[0] == 2  # the input's and the last step's
    assert result.steps == STEPS
    assert result.checkpoint.step == STEPS
    assert result.checkpoint.state is result.state
    assert len(result.state.log) == STEPS


def test_a_stream_or_a_checkpointer_still_gets_every_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = checkpoints_made(monkeypatch)
    assert len(list(grow_runner().stream(Grow(), thread_id="t"))) == STEPS + 1
    assert made[0] == STEPS + 1
    store = InMemoryCheckpointer(Grow)
    grow_runner(store).invoke(Grow(), thread_id="t")
    assert made[0] == 2 * (STEPS + 1)
    assert [cp.step for cp in store.history("t")] == list(range(STEPS, -1, -1))


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def without_times(cp: Any) -> Any:
    return attrs.evolve(
        cp,
        created_at=EPOCH,
        duration=0.0,
        writes=tuple(attrs.evolve(w, duration=0.0) for w in cp.writes),
    )


def test_the_last_checkpoint_is_the_same_with_or_without_a_checkpointer() -> None:
    quiet = grow_runner().invoke(Grow(), thread_id="t")
    kept = grow_runner(InMemoryCheckpointer(Grow)).invoke(Grow(), thread_id="t")
    assert without_times(quiet.checkpoint) == without_times(kept.checkpoint)
    assert quiet.checkpoint.writes[0].updates == (Tick(n=1, log=Entry(f"entry {STEPS - 1}")),)


def test_an_interrupt_without_checkpointer_returns_the_step_it_stopped_at() -> None:
    runner = Runner(
        Grow,
        nodes=[grow],
        entry="grow",
        routes={"grow": lambda s: END if s.n >= STEPS else "grow"},
        interrupt_before=["grow"],
    )
    # The input's checkpoint already stops before "grow".
    first = runner.invoke(Grow(), thread_id="t")
    assert isinstance(first, Interrupted)
    assert (first.steps, first.checkpoint.step) == (0, 0)
    after = Runner(
        Grow,
        nodes=[grow],
        entry="grow",
        routes={"grow": lambda s: END if s.n >= STEPS else "grow"},
        interrupt_after=["grow"],
    ).invoke(Grow(), thread_id="t")
    assert isinstance(after, Interrupted)
    assert (after.steps, after.checkpoint.step, after.state.n) == (1, 1, 1)
    assert after.checkpoint.status == "interrupted"
    assert after.reason == "after node 'grow'"
    assert after.checkpoint.next == ("grow",)


def test_async_runs_without_checkpointer_make_only_the_checkpoints_they_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @Grow.node(name="grow")
    async def agrow(state: Grow) -> Tick:
        await asyncio.sleep(0)
        return Tick(n=1, log=Entry(f"entry {state.n}"))

    runner = Runner(
        Grow,
        nodes=[agrow],
        entry="grow",
        routes={"grow": lambda s: END if s.n >= STEPS else "grow"},
        step_limit=STEPS + 1,
    )
    made = checkpoints_made(monkeypatch)
    result = asyncio.run(runner.ainvoke(Grow(), thread_id="t"))
    assert made[0] == 2
    assert result.state == grow_runner().invoke(Grow(), thread_id="u").state


# ----- the derived reducer builds the new state like attrs.evolve ----------------------------


@attrs.frozen
class Limited(StateSchema[Tick]):
    """A state whose counter is validated, with a field ``__init__`` does not take."""

    n: int = field(default=0, reducer=add)
    log: tuple[Entry, ...] = field(default=(), reducer=append)
    kind: str = attrs.field(init=False, default="limited")

    @n.validator
    def _at_most_two(self, attribute: object, value: int) -> None:
        if value > 2:
            raise ValueError(f"n may not exceed 2, got {value}")


def test_the_derived_reducer_runs_validators_and_skips_non_init_fields() -> None:
    state = Limited().apply(Tick(n=2, log=Entry("a")))
    assert state == attrs.evolve(Limited(), n=2, log=(Entry("a"),))
    assert state.kind == "limited"
    assert state.apply(Tick()) is state  # nothing set: nothing to build
    with pytest.raises(ValueError, match="may not exceed 2"):
        state.apply(Tick(n=1))


def test_a_validator_failing_in_a_step_is_a_reducer_error() -> None:
    @Limited.node
    def bump(state: Limited) -> Tick:
        return Tick(n=1)

    runner = Runner(Limited, nodes=[bump], entry="bump", edges={"bump": "bump"})
    with pytest.raises(ReducerError) as caught:
        runner.invoke(Limited(), thread_id="t")
    assert caught.value.step == 3


# ----- an update type that admits None ----------------------------------------------------


@attrs.frozen
class MaybeNote(StateSchema[Entry | None]):
    """A state whose update type includes None: a node returning None still means no update."""

    seen: tuple[Entry | None, ...] = ()

    def apply(self, update: Entry | None) -> MaybeNote:
        return MaybeNote(seen=(*self.seen, update))


def test_none_is_no_update_even_when_the_update_type_admits_it() -> None:
    @MaybeNote.node
    def quiet(state: MaybeNote) -> None:
        return None

    @MaybeNote.node
    def noisy(state: MaybeNote) -> Entry:
        return Entry("x")

    runner = Runner(MaybeNote, nodes=[quiet, noisy], entry="quiet", edges={"quiet": "noisy"})
    result = runner.invoke(MaybeNote(), thread_id="t")
    assert result.state.seen == (Entry("x"),)
    assert copy.deepcopy(result.state) == result.state


def test_what_is_immutable_is_decided_per_type_even_for_short_lived_type_objects() -> None:
    # ``list[int]`` and ``tuple[int, ...]`` are new objects each time, freed after use, so
    # their ids are reused: an answer cached by id alone would be given to the wrong type.
    for _ in range(200):
        assert not is_immutable_type(list[int])
        assert is_immutable_type(tuple[int, ...])


# ----- a lone async node still runs as a task of its own ------------------------------------

WHO: ContextVar[str] = ContextVar("WHO", default="caller")


def test_a_lone_async_node_runs_in_its_own_context() -> None:
    seen: list[str] = []

    @Grow.node(name="grow")
    async def claim(state: Grow) -> Tick:
        seen.append(WHO.get())
        WHO.set("node")
        return Tick(n=1)

    runner = Runner(
        Grow, nodes=[claim], entry="grow", routes={"grow": lambda s: END if s.n >= 2 else "grow"}
    )

    async def main() -> str:
        await runner.ainvoke(Grow(), thread_id="t")
        return WHO.get()

    assert asyncio.run(main()) == "caller"
    assert seen == ["caller", "caller"]


def test_cancelling_ainvoke_cancels_a_lone_async_node() -> None:
    cancelled: list[str] = []

    @Grow.node(name="grow")
    async def slow(state: Grow) -> Tick:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("grow")
            raise
        return Tick(n=1)

    runner = Runner(Grow, nodes=[slow], entry="grow")

    async def main() -> None:
        task = asyncio.ensure_future(runner.ainvoke(Grow(), thread_id="t"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled == ["grow"]
