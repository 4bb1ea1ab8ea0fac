"""Arguments of the wrong type: the plain builtin TypeError, on every backend alike, naming the
argument and the type received, before anything is stored; and update type errors on resume
and fork that name the thread and the types.

Thread ids often come from untyped data (JSON, a web request), where mypy cannot see an
``int``; these tests pass such values through ``cast``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TypeAlias, cast

import attrs
import pytest

from typedflow import (
    RESUME_WRITER,
    Checkpoint,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    Interrupted,
    ParentRef,
    ReducerError,
    Runner,
    StateSchema,
    UpdateTypeError,
)
from typedflow.checkpoint.base import FORK_WRITER
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


@attrs.frozen
class Edit:
    """An update: text to append."""

    text: str = ""
    """Appended to the body."""


@attrs.frozen
class Wrong:
    """An attrs class that is not the update type."""

    text: str = ""
    """Unused."""


@attrs.frozen
class Doc(StateSchema[Edit]):
    """A document that grows by edits."""

    body: str = ""
    """The text so far."""

    def apply(self, update: Edit) -> Doc:
        if update.text == "refused":
            raise ValueError("refused")
        return Doc(body=self.body + update.text)


@Doc.node
def draft(state: Doc) -> Edit:
    return Edit(text="d")


@Doc.node
def publish(state: Doc) -> Edit:
    return Edit(text="p")


def runner_for(cp: HistoryCheckpointer[Doc]) -> Runner[Doc]:
    """draft -> publish, stopping before publish."""
    return Runner(
        Doc,
        nodes=[draft, publish],
        entry="draft",
        edges={"draft": "publish"},
        interrupt_before=["publish"],
        checkpointer=cp,
    )


Kind: TypeAlias = Literal["memory", "duckdb-step", "duckdb-batch"]


@pytest.fixture(params=["memory", "duckdb-step", "duckdb-batch"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryCheckpointer[Doc]]:
    """A store holding thread ``t``, interrupted at step 1 before ``publish``."""
    kind: Kind = request.param
    cp: HistoryCheckpointer[Doc] = (
        InMemoryCheckpointer(Doc)
        if kind == "memory"
        else DuckDBCheckpointer(
            Doc, tmp_path / "args.duckdb", durability="step" if kind == "duckdb-step" else "batch"
        )
    )
    assert isinstance(runner_for(cp).invoke(Doc(), thread_id="t"), Interrupted)
    yield cp
    cp.close()


def everything(cp: HistoryCheckpointer[Doc]) -> dict[str, list[Checkpoint[Doc]]]:
    """Every stored checkpoint, by thread."""
    return {t.thread_id: cp.history(t.thread_id) for t in cp.threads()}


# ----- thread ids that are not str -----------------------------------------------------------

FIVE = cast("str", 5)  # cast: an id from untyped data; mypy rejects the int itself


def at_five() -> Checkpoint[Doc]:
    return Checkpoint(thread_id=FIVE, step=0, state=Doc(), next=("draft",))


Call: TypeAlias = Callable[[HistoryCheckpointer[Doc]], object]

NOT_STR_CALLS: list[tuple[str, str, Call]] = [
    ("invoke", "thread_id", lambda cp: runner_for(cp).invoke(Doc(), thread_id=FIVE)),
    (
        "ainvoke",
        "thread_id",
        lambda cp: asyncio.run(runner_for(cp).ainvoke(Doc(), thread_id=FIVE)),
    ),
    ("stream", "thread_id", lambda cp: list(runner_for(cp).stream(Doc(), thread_id=FIVE))),
    ("resume", "thread_id", lambda cp: runner_for(cp).resume(FIVE)),
    ("resume-update", "thread_id", lambda cp: runner_for(cp).resume(FIVE, update=Edit())),
    ("aresume", "thread_id", lambda cp: asyncio.run(runner_for(cp).aresume(FIVE))),
    (
        "resume-as-thread",
        "as_thread",
        lambda cp: runner_for(cp).resume("t", from_step=0, as_thread=FIVE),
    ),
    ("runner-fork", "thread_id", lambda cp: runner_for(cp).fork(FIVE, 0, "new")),
    ("runner-fork-target", "new_thread_id", lambda cp: runner_for(cp).fork("t", 0, FIVE)),
    ("save", "checkpoint.thread_id", lambda cp: cp.save(at_five())),
    ("asave", "checkpoint.thread_id", lambda cp: asyncio.run(cp.asave(at_five()))),
    ("load", "thread_id", lambda cp: cp.load(FIVE)),
    ("load-keyword", "thread_id", lambda cp: cp.load(thread_id=FIVE)),
    ("load_at", "thread_id", lambda cp: cp.load_at(FIVE, 0)),
    ("history", "thread_id", lambda cp: cp.history(FIVE, limit=1)),
    ("delete", "thread_id", lambda cp: cp.delete(FIVE)),
    ("prune", "thread_id", lambda cp: cp.prune(FIVE, keep=1)),
    ("fork", "thread_id", lambda cp: cp.fork(FIVE, 0, "new")),
    ("fork-target", "new_thread_id", lambda cp: cp.fork("t", 0, FIVE)),
    (
        "fork-target-update",
        "new_thread_id",
        lambda cp: cp.fork("t", 0, FIVE, update=Edit(text="x")),
    ),
]


@pytest.mark.parametrize(
    ("argument", "call"),
    [(a, c) for _, a, c in NOT_STR_CALLS],
    ids=[n for n, _, _ in NOT_STR_CALLS],
)
def test_a_thread_id_that_is_not_a_str_is_a_plain_type_error_and_stores_nothing(
    store: HistoryCheckpointer[Doc], argument: str, call: Call
) -> None:
    before = everything(store)
    with pytest.raises(TypeError) as info:
        call(store)
    assert type(info.value) is TypeError
    assert str(info.value) == f"{argument} must be a str, got 5 of type int"
    assert everything(store) == before
    store.flush()
    assert [t.thread_id for t in store.threads()] == ["t"]


@pytest.mark.parametrize("value", [b"t", None, 1.5, ("t",)], ids=repr)
def test_other_values_name_their_type(store: HistoryCheckpointer[Doc], value: object) -> None:
    with pytest.raises(TypeError) as info:
        store.load(cast("str", value))  # cast: see FIVE
    assert (
        str(info.value) == f"thread_id must be a str, got {value!r} of type {type(value).__name__}"
    )


def test_an_empty_thread_id_is_still_refused_by_the_runner(
    store: HistoryCheckpointer[Doc],
) -> None:
    with pytest.raises(TypeError, match="thread_id must be a non-empty str, got ''"):
        runner_for(store).invoke(Doc(), thread_id="")


class Recording(InMemoryCheckpointer[Doc]):
    """A user's backend: overrides save and load, and records the ids they receive."""

    def __init__(self) -> None:
        super().__init__(Doc)
        self.seen: list[object] = []

    def save(self, checkpoint: Checkpoint[Doc]) -> None:
        self.seen.append(checkpoint.thread_id)
        super().save(checkpoint)

    def load(self, thread_id: str) -> Checkpoint[Doc]:
        self.seen.append(thread_id)
        return super().load(thread_id)


def test_a_users_backend_gets_the_check_without_writing_it() -> None:
    cp = Recording()
    cp.save(Checkpoint(thread_id="ok", step=0, state=Doc(), next=()))
    with pytest.raises(TypeError, match=r"checkpoint\.thread_id must be a str, got 5 of type int"):
        cp.save(at_five())
    with pytest.raises(TypeError, match="thread_id must be a str, got 5 of type int"):
        cp.load(FIVE)
    assert cp.seen == ["ok"]  # the backend's own methods never saw the int
    assert [t.thread_id for t in cp.threads()] == ["ok"]


def test_the_reference_backend_checks_ids_itself_at_no_cost_per_save() -> None:
    # It checks where a thread is created or missed, so its save runs unwrapped.
    assert not hasattr(InMemoryCheckpointer.save, "__wrapped__")
    assert hasattr(Recording.save, "__wrapped__")


# ----- update type errors on resume and fork -------------------------------------------------

WRONG = cast("Edit", Wrong(text="x"))  # cast: untyped callers may pass anything


def test_a_resume_update_of_the_wrong_type_names_the_thread_and_the_types(
    store: HistoryCheckpointer[Doc],
) -> None:
    before = everything(store)
    with pytest.raises(UpdateTypeError) as info:
        runner_for(store).resume("t", update=WRONG)
    message = str(info.value)
    assert "the resume update Wrong(text='x') (type Wrong) of thread 't' at step 2" in message
    assert "is not of the update type Edit of Doc" in message
    assert "<class" not in message
    assert (info.value.thread_id, info.value.step, info.value.node) == ("t", 2, RESUME_WRITER)
    assert everything(store) == before


def test_a_resume_into_a_new_thread_with_a_wrong_update_leaves_no_fork_behind(
    store: HistoryCheckpointer[Doc],
) -> None:
    before = everything(store)
    runner = runner_for(store)
    with pytest.raises(UpdateTypeError) as info:
        runner.resume("t", from_step=0, as_thread="n", update=WRONG)
    assert "of thread 'n' at step 1" in str(info.value)
    assert (info.value.thread_id, info.value.step) == ("n", 1)
    with pytest.raises(ReducerError) as refused:
        runner.resume("t", from_step=0, as_thread="n", update=Edit(text="refused"))
    assert (refused.value.thread_id, refused.value.step) == ("n", 1)
    assert everything(store) == before
    done = runner.resume("t", from_step=0, as_thread="n", update=Edit(text="e"))
    assert done.thread_id == "n"
    forked = store.history("n")
    assert forked[-1].parent == ParentRef(thread_id="t", step=0)
    assert [(c.step, c.state.body) for c in forked][-2:] == [(1, "e"), (0, "")]


@pytest.mark.parametrize("via", ["checkpointer", "runner"])
def test_a_fork_update_of_the_wrong_type_names_the_threads_and_the_types(
    store: HistoryCheckpointer[Doc], via: str
) -> None:
    before = everything(store)
    fork = runner_for(store).fork if via == "runner" else store.fork
    with pytest.raises(UpdateTypeError) as info:
        fork("t", 1, "f", update=WRONG)
    message = str(info.value)
    assert (
        "the fork update Wrong(text='x') (type Wrong) of thread 'f', forked from thread 't' "
        "at step 1, is not of the update type Edit of Doc"
    ) in message
    assert "<class" not in message
    assert (info.value.thread_id, info.value.step, info.value.node) == ("f", 1, FORK_WRITER)
    assert everything(store) == before
