"""Bad input on every backend: each mistake gets an error that says what and where, and
nothing already stored is lost or changed by it.

"Nothing lost" is checked the same way throughout: every thread's full history
is read before the mistake and compared after it (and, for DuckDB files, the
raw rows of every table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias, cast

import attrs
import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from typedflow import (
    Checkpoint,
    CheckpointError,
    Completed,
    ConflictError,
    GraphError,
    HistoryCheckpointer,
    IncompatibleSchemaError,
    InMemoryCheckpointer,
    Interrupted,
    RoutingError,
    Runner,
    SchemaError,
    StateSchema,
    StepNotFoundError,
    ThreadNotFoundError,
    UpdateTypeError,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

Stage: TypeAlias = Literal["draft", "review", "done"]


@attrs.frozen
class Edit:
    """An update: text to append and, optionally, a new stage."""

    text: str = ""
    """Appended to the body."""
    stage: Stage | None = None
    """The new stage; None keeps it."""


@attrs.frozen(kw_only=True)
class Paper(StateSchema[Edit]):
    """A state with a field without default, a Literal field and a free text field."""

    title: str
    """Required: a stored NULL here cannot mean "use the default"."""
    stage: Stage = "draft"
    """One of three values."""
    body: str = ""
    """Free text (made 10 MB long by one test)."""

    def apply(self, update: Edit) -> Paper:
        return attrs.evolve(self, body=self.body + update.text, stage=update.stage or self.stage)


@Paper.node
def write(state: Paper) -> Edit:
    return Edit(text=f"[{len(state.body)}]")


@Paper.node
def submit(state: Paper) -> Edit:
    return Edit(text="!", stage="review")


@Paper.node
def accept(state: Paper) -> Edit:
    return Edit(stage="done")


def runner_for(cp: HistoryCheckpointer[Paper], **kwargs: Any) -> Runner[Paper]:
    """write -> submit -> accept: four checkpoints per thread."""
    return Runner(
        Paper,
        nodes=[write, submit, accept],
        entry="write",
        edges={"write": "submit", "submit": "accept"},
        checkpointer=cp,
        **kwargs,
    )


Kind: TypeAlias = Literal["memory", "duckdb"]


@attrs.define
class Backend:
    """Opens one store; ``reopen`` closes and reopens it (a no-op in memory)."""

    kind: Kind
    path: Path
    opened: list[HistoryCheckpointer[Paper]] = attrs.Factory(list)
    memory: InMemoryCheckpointer[Paper] = attrs.Factory(lambda: InMemoryCheckpointer(Paper))

    def open(self) -> HistoryCheckpointer[Paper]:
        cp: HistoryCheckpointer[Paper] = (
            self.memory if self.kind == "memory" else DuckDBCheckpointer(Paper, self.path)
        )
        self.opened.append(cp)
        return cp

    def reopen(self, cp: HistoryCheckpointer[Paper]) -> HistoryCheckpointer[Paper]:
        if self.kind == "memory":
            return cp
        cp.close()
        return self.open()


@pytest.fixture(params=["memory", "duckdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path / "bad.duckdb")
    yield b
    for cp in b.opened:
        cp.close()


@pytest.fixture
def populated(backend: Backend) -> HistoryCheckpointer[Paper]:
    """Two finished threads, ``t`` and ``u``, and ``f``, a fork of ``t`` at step 1."""
    cp = backend.open()
    runner = runner_for(cp)
    runner.invoke(Paper(title="T"), thread_id="t")
    runner.invoke(Paper(title="U"), thread_id="u")
    cp.fork("t", 1, "f")
    return cp


def everything(cp: HistoryCheckpointer[Paper]) -> dict[str, list[Checkpoint[Paper]]]:
    """Every stored checkpoint, by thread."""
    return {t.thread_id: cp.history(t.thread_id) for t in cp.threads()}


# ----- unknown threads and steps -----------------------------------------------------------

UNKNOWN = "no-such'; thread"

Call: TypeAlias = Callable[[HistoryCheckpointer[Paper]], object]

UNKNOWN_THREAD_CALLS: list[tuple[str, Call]] = [
    ("load", lambda cp: cp.load(UNKNOWN)),
    ("load_at", lambda cp: cp.load_at(UNKNOWN, 0)),
    ("history", lambda cp: cp.history(UNKNOWN, limit=1)),
    ("delete", lambda cp: cp.delete(UNKNOWN)),
    ("prune", lambda cp: cp.prune(UNKNOWN, keep=1)),
    ("fork", lambda cp: cp.fork(UNKNOWN, 0, "new")),
    ("fork-update", lambda cp: cp.fork(UNKNOWN, 0, "new", update=Edit(text="x"))),
    ("resume", lambda cp: runner_for(cp).resume(UNKNOWN)),
    ("resume-update", lambda cp: runner_for(cp).resume(UNKNOWN, update=Edit(text="x"))),
    ("resume-from", lambda cp: runner_for(cp).resume(UNKNOWN, from_step=0, as_thread="new")),
    ("runner-fork", lambda cp: runner_for(cp).fork(UNKNOWN, 0, "new")),
]


@pytest.mark.parametrize(
    "call", [c for _, c in UNKNOWN_THREAD_CALLS], ids=[n for n, _ in UNKNOWN_THREAD_CALLS]
)
def test_an_unknown_thread_is_named_and_nothing_changes(
    populated: HistoryCheckpointer[Paper], call: Call
) -> None:
    before = everything(populated)
    with pytest.raises(ThreadNotFoundError) as info:
        call(populated)
    assert isinstance(info.value, LookupError)
    assert info.value.thread_id == UNKNOWN
    assert repr(UNKNOWN) in str(info.value)
    assert everything(populated) == before


UNKNOWN_STEP_CALLS: list[tuple[str, int, Call]] = [
    ("load_at-after-latest", 4, lambda cp: cp.load_at("t", 4)),
    ("load_at-negative", -1, lambda cp: cp.load_at("t", -1)),
    ("load_at-before-a-fork", 0, lambda cp: cp.load_at("f", 0)),
    ("fork-at-missing-step", 9, lambda cp: cp.fork("t", 9, "new")),
    (
        "fork-at-missing-step-with-update",
        9,
        lambda cp: cp.fork("t", 9, "new", update=Edit(text="x")),
    ),
    (
        "resume-from-missing-step",
        9,
        lambda cp: runner_for(cp).resume("t", from_step=9, as_thread="new"),
    ),
]


@pytest.mark.parametrize(
    ("step", "call"),
    [(s, c) for _, s, c in UNKNOWN_STEP_CALLS],
    ids=[n for n, _, _ in UNKNOWN_STEP_CALLS],
)
def test_an_unknown_step_is_named_and_nothing_changes(
    populated: HistoryCheckpointer[Paper], step: int, call: Call
) -> None:
    before = everything(populated)
    with pytest.raises(StepNotFoundError) as info:
        call(populated)
    assert isinstance(info.value, LookupError)
    assert info.value.step == step
    assert info.value.thread_id in ("t", "f")
    assert f"thread {info.value.thread_id!r} has no checkpoint at step {step}" in str(info.value)
    assert everything(populated) == before


def test_a_pruned_step_is_unknown_too(populated: HistoryCheckpointer[Paper]) -> None:
    assert populated.prune("t", keep=2) == 2
    before = everything(populated)
    for call in (
        lambda: populated.load_at("t", 1),
        lambda: populated.fork("t", 1, "new"),
        lambda: runner_for(populated).resume("t", from_step=1, as_thread="new"),
    ):
        with pytest.raises(StepNotFoundError, match="thread 't' has no checkpoint at step 1"):
            call()
    assert everything(populated) == before
    # The fork taken at step 1 before the prune does not depend on it.
    assert populated.load_at("f", 1).state == Paper(title="T", body="[0]")


# ----- forks into a taken thread id --------------------------------------------------------

TAKEN_CALLS: list[tuple[str, str, Call]] = [
    ("fork-onto-another-thread", "u", lambda cp: cp.fork("t", 1, "u")),
    ("fork-onto-a-fork", "f", lambda cp: cp.fork("t", 2, "f", update=Edit(text="x"))),
    ("fork-onto-itself", "t", lambda cp: cp.fork("t", 1, "t")),
    (
        "resume-as-a-taken-thread",
        "u",
        lambda cp: runner_for(cp).resume("t", from_step=1, as_thread="u"),
    ),
    (
        "invoke-a-taken-thread",
        "u",
        lambda cp: runner_for(cp).invoke(Paper(title="x"), thread_id="u"),
    ),
]


@pytest.mark.parametrize(
    ("taken", "call"), [(t, c) for _, t, c in TAKEN_CALLS], ids=[n for n, _, _ in TAKEN_CALLS]
)
def test_a_taken_thread_id_conflicts_and_nothing_changes(
    populated: HistoryCheckpointer[Paper], taken: str, call: Call
) -> None:
    before = everything(populated)
    with pytest.raises(ConflictError) as info:
        call(populated)
    assert info.value.thread_id == taken
    assert f"thread {taken!r} already has a checkpoint" in str(info.value)
    assert "fork into a new thread id" in str(info.value)
    assert everything(populated) == before


# ----- a node returning the wrong type -----------------------------------------------------


def test_a_node_returning_the_wrong_type_at_run_time(backend: Backend) -> None:
    @Paper.node
    def sloppy(state: Paper) -> Edit:
        # cast: untyped code returning the plain form of an update instead of an update
        return cast("Edit", {"text": "looks like an Edit"})

    cp = backend.open()
    runner = Runner(
        Paper,
        nodes=[write, sloppy, accept],
        entry="write",
        edges={"write": ["accept", "sloppy"]},
        checkpointer=cp,
    )
    with pytest.raises(UpdateTypeError) as info:
        runner.invoke(Paper(title="T"), thread_id="t")
    assert isinstance(info.value, TypeError)
    assert (info.value.thread_id, info.value.step, info.value.node) == ("t", 2, "sloppy")
    message = str(info.value)
    assert "node 'sloppy' returned {'text': 'looks like an Edit'} (type dict)" in message
    assert "at step 2 of thread 't'" in message
    assert "must return Edit" in message

    cp = backend.reopen(cp)
    steps = list(reversed(cp.history("t")))
    assert [(c.step, c.status) for c in steps] == [(0, "ok"), (1, "ok"), (2, "error")]
    assert steps[2].state == steps[1].state == Paper(title="T", body="[0]")
    # The other node of the step kept its write; the wrong value was never stored.
    assert [(w.node, w.updates) for w in steps[2].pending] == [("accept", (Edit(stage="done"),))]
    assert [(f.node, f.error_type) for f in steps[2].failures] == [
        ("sloppy", "typedflow.errors.UpdateTypeError")
    ]


# ----- schemas typedflow cannot store ------------------------------------------------------


class Opaque:
    """A plain class: cattrs has no way to store it."""


@attrs.frozen
class Inner:
    """A nested class with a field that cannot be stored."""

    callback: Callable[[int], int]
    """Code, not data."""


@attrs.frozen
class OpaqueField(StateSchema[Edit]):
    n: int = 0
    thing: Opaque = attrs.field(factory=Opaque)

    def apply(self, update: Edit) -> OpaqueField:
        return self


@attrs.frozen
class AnyField(StateSchema[Edit]):
    n: int = 0
    anything: Any = None

    def apply(self, update: Edit) -> AnyField:
        return self


@attrs.frozen
class NestedBadField(StateSchema[Edit]):
    n: int = 0
    items: tuple[Inner, ...] = ()

    def apply(self, update: Edit) -> NestedBadField:
        return self


@attrs.frozen
class BadUpdate:
    when: object = None


@attrs.frozen
class BadUpdateField(StateSchema[BadUpdate]):
    n: int = 0

    def apply(self, update: BadUpdate) -> BadUpdateField:
        return self


class NotAttrs(StateSchema[Edit]):
    n: int = 0


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (OpaqueField, "OpaqueField.thing has type <class 'tests.test_bad_input.Opaque'>"),
        (AnyField, "AnyField.anything is typed typing.Any"),
        (
            NestedBadField,
            "NestedBadField.items[].callback has type collections.abc.Callable[[int], int]",
        ),
        (BadUpdateField, "update.when is typed <class 'object'>"),
        (NotAttrs, "state schema NotAttrs is not an attrs class"),
    ],
    ids=["opaque-class", "any", "nested-callable", "update-field", "not-attrs"],
)
def test_a_schema_duckdb_cannot_store_fails_when_the_checkpointer_is_built(
    tmp_path: Path, schema: type[StateSchema[Any]], message: str
) -> None:
    path = tmp_path / "shared.duckdb"
    with DuckDBCheckpointer(Paper, path) as cp:
        runner_for(cp).invoke(Paper(title="T"), thread_id="t")
    before = raw_rows(path)
    with pytest.raises(SchemaError) as info:
        DuckDBCheckpointer(schema, path)
    assert isinstance(info.value, TypeError)
    assert message in str(info.value)
    assert raw_rows(path) == before
    # The in-memory backend stores objects, not their serialized form: it takes any attrs
    # schema that DuckDB refuses for its field types.
    if schema is not NotAttrs:
        assert InMemoryCheckpointer(schema).schema is schema


# ----- rows edited by hand -----------------------------------------------------------------


def raw_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a DuckDB file, as text (read without typedflow)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        ]
        return {
            t: con.execute(f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM "{t}" ORDER BY ALL').fetchall()
            for t in tables
        }
    finally:
        con.close()


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ("struct_update(state, stage := 'archived')", "stage"),
        ("struct_update(state, title := NULL)", "title"),
    ],
    ids=["literal-out-of-range", "null-in-required-field"],
)
def test_a_row_edited_by_hand_fails_naming_field_and_step(
    tmp_path: Path, edit: str, field: str
) -> None:
    path = tmp_path / "edited.duckdb"
    with DuckDBCheckpointer(Paper, path) as cp:
        runner = runner_for(cp)
        runner.invoke(Paper(title="A"), thread_id="a")
        runner.invoke(Paper(title="B"), thread_id="b")
        good = everything(cp)
    # An analyst edits one row with plain SQL, as docs/sql.md allows.
    con = duckdb.connect(str(path))
    con.execute(f"UPDATE paper_checkpoints SET state = {edit} WHERE thread_id = 'a' AND step = 2")
    con.close()

    with DuckDBCheckpointer(Paper, path) as cp:
        where = f"checkpoint['a', step 2].state.{field}"
        for read in (lambda: cp.load_at("a", 2), lambda: cp.history("a")):
            with pytest.raises(IncompatibleSchemaError) as info:
                read()
            assert info.value.field == where
            assert where in str(info.value)
            assert "thread 'a' at step 2 does not fit Paper" in str(info.value)
        # Every other row, of this thread and of the other, still loads as it was saved.
        for step in (0, 1, 3):
            assert cp.load_at("a", step) == good["a"][3 - step]
        assert cp.load("a") == good["a"][0]
        assert cp.history("a", limit=1) == good["a"][:1]
        assert cp.history("a", before=2) == good["a"][2:]
        assert cp.history("b") == good["b"]
        assert {t.thread_id: t.latest_step for t in cp.threads()} == {"a": 3, "b": 3}
        # Work goes on around the bad row: forks of good steps, new runs.
        assert cp.fork("a", 3, "a2").state == good["a"][0].state
        done = runner_for(cp).invoke(Paper(title="C"), thread_id="c")
        assert done.state.stage == "done"


# ----- awkward thread ids ------------------------------------------------------------------

# Any text (without lone surrogates, which UTF-8 cannot hold): quotes, SQL, NUL, emoji, ...
thread_ids = st.text(max_size=40)

AWKWARD = [
    "'); DROP TABLE paper_checkpoints; --",
    "quo\"te's; --",
    "nul\x00inside",
    "\x00",
    "naïve 漢字 🙂 \u200b",
    "%s ? $1 :name \\",
    "x" * 10_000,
    "",
]


def _examples() -> int:
    # A handful per run on top of the explicit examples; more under the ci and soak profiles.
    return max(10, settings().max_examples // 5)


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_any_thread_id_is_stored_and_found_exactly(kind: Kind) -> None:
    cp: HistoryCheckpointer[Paper] = (
        InMemoryCheckpointer(Paper) if kind == "memory" else DuckDBCheckpointer(Paper)
    )

    @settings(
        max_examples=_examples(),
        suppress_health_check=[HealthCheck.too_slow],
        deadline=None,
    )
    @given(st.lists(thread_ids, min_size=1, max_size=4, unique=True))
    @example(AWKWARD)
    def check(ids: list[str]) -> None:
        for i, tid in enumerate(ids):
            cp.save(Checkpoint(thread_id=tid, step=0, state=Paper(title=f"#{i}"), next=("a",)))
            cp.save(Checkpoint(thread_id=tid, step=1, state=Paper(title=f"#{i}"), next=()))
        assert sorted(t.thread_id for t in cp.threads()) == sorted(ids)
        for i, tid in enumerate(ids):
            loaded = cp.load(tid)
            assert (loaded.thread_id, loaded.step, loaded.state.title) == (tid, 1, f"#{i}")
            assert [c.thread_id for c in cp.history(tid)] == [tid, tid]
            assert cp.load_at(tid, 0).thread_id == tid
        # Ids that differ only by a suffix, a NUL or a quote are different threads.
        for tid in ids:
            for near in (tid + "\x00", tid + "'", tid[:-1]):
                if near not in ids:
                    with pytest.raises(ThreadNotFoundError):
                        cp.load(near)
        forked = cp.fork(ids[0], 0, ids[0] + " (fork)") if ids[0] + " (fork)" not in ids else None
        for tid in ids:
            cp.delete(tid)
        if forked is not None:
            assert [t.thread_id for t in cp.threads()] == [forked.thread_id]
            assert cp.load(forked.thread_id).parent is not None
            cp.delete(forked.thread_id)
        assert cp.threads() == []

    try:
        check()
    finally:
        cp.close()


@pytest.mark.parametrize("durability", ["step", "batch"])
def test_awkward_thread_ids_through_the_runner_and_a_reopened_file(
    tmp_path: Path, durability: Literal["step", "batch"]
) -> None:
    path = tmp_path / "ids.duckdb"
    ids = [t for t in AWKWARD if t]  # the runner refuses an empty thread id
    with DuckDBCheckpointer(Paper, path, durability=durability) as cp:
        runner = runner_for(cp)
        for tid in ids:
            # The id in the state too: batched rows go to DuckDB as text in the SQL itself.
            runner.invoke(Paper(title=tid), thread_id=tid)
        with pytest.raises(TypeError, match="thread_id must be a non-empty str"):
            runner.invoke(Paper(title=""), thread_id="")
    with DuckDBCheckpointer(Paper, path) as cp:
        assert sorted(t.thread_id for t in cp.threads()) == sorted(ids)
        for tid in ids:
            assert [c.step for c in cp.history(tid)] == [3, 2, 1, 0]
            loaded = cp.load(tid).state
            assert (loaded.stage, loaded.title) == ("done", tid)
    # The SQL in an id was never run: every table is still there.
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM paper_checkpoints").fetchone() == (4 * len(ids),)
    finally:
        con.close()


@pytest.mark.parametrize("durability", ["step", "batch"])
def test_a_thread_id_utf8_cannot_hold_is_refused_clearly(
    durability: Literal["step", "batch"],
) -> None:
    with DuckDBCheckpointer(Paper, durability=durability) as cp:
        cp.save(Checkpoint(thread_id="ok", step=0, state=Paper(title="T"), next=()))
        with pytest.raises(CheckpointError, match="thread"):
            cp.save(Checkpoint(thread_id="bad \ud800", step=0, state=Paper(title="T"), next=()))
        assert [t.thread_id for t in cp.threads()] == ["ok"]


# ----- graphs and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        pytest.param(
            lambda cp: Runner(Paper, nodes=[], entry="write", checkpointer=cp),
            GraphError,
            "no nodes",
            id="empty-graph",
        ),
        pytest.param(
            lambda cp: runner_for(cp, step_limit=0),
            ValueError,  # an argument out of range, not a graph mistake
            "step_limit must be a whole number of at least 1, got 0",
            id="step-limit-0",
        ),
        pytest.param(
            lambda cp: Runner(
                Paper, nodes=[write], entry="write", edges={"write": "missing"}, checkpointer=cp
            ),
            GraphError,
            "edges['write'] names unknown node 'missing'",
            id="edge-to-missing-node",
        ),
    ],
)
def test_a_graph_that_cannot_run_is_refused_before_anything_is_stored(
    populated: HistoryCheckpointer[Paper],
    make: Callable[[HistoryCheckpointer[Paper]], Runner[Paper]],
    error: type[Exception],
    message: str,
) -> None:
    before = everything(populated)
    with pytest.raises(error) as info:
        make(populated)
    assert type(info.value) is error
    assert message in str(info.value)
    assert everything(populated) == before


def test_a_step_limit_of_zero_per_call_is_refused_before_anything_is_stored(
    backend: Backend,
) -> None:
    # A limit of 0 would make a run that can do nothing; it is refused, not treated as "none".
    cp = backend.open()
    runner = runner_for(cp, interrupt_before=["accept"])
    assert isinstance(runner.invoke(Paper(title="T"), thread_id="t"), Interrupted)
    before = everything(cp)
    calls: list[Callable[[], object]] = [
        lambda: runner.invoke(Paper(title="U"), thread_id="u", step_limit=0),
        lambda: runner.resume("t", step_limit=0),
        lambda: runner.resume("t", update=Edit(text="x"), step_limit=0),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"step_limit .* at least 1, got 0") as info:
            call()
        assert type(info.value) is ValueError
    assert everything(cp) == before
    assert isinstance(runner.resume("t", step_limit=1), Completed)


def test_a_route_to_a_missing_node_fails_at_run_time_naming_it(backend: Backend) -> None:
    cp = backend.open()
    runner = Runner(
        Paper,
        nodes=[write, submit],
        entry="write",
        routes={"write": lambda s: "submit" if len(s.body) < 5 else "publish"},
        edges={"submit": "write"},
        checkpointer=cp,
    )
    with pytest.raises(RoutingError) as info:
        runner.invoke(Paper(title="T"), thread_id="t")
    assert (info.value.thread_id, info.value.step, info.value.node) == ("t", 3, "write")
    assert "'publish'" in str(info.value)
    assert "thread 't', step 3" in str(info.value)
    cp = backend.reopen(cp)
    steps = list(reversed(cp.history("t")))
    assert [(c.step, c.status) for c in steps] == [(0, "ok"), (1, "ok"), (2, "ok"), (3, "error")]
    assert steps[3].state == steps[2].state
    assert [w.node for w in steps[3].pending] == ["write"]


# ----- a 10 MB state -----------------------------------------------------------------------


def test_a_10_mb_state_round_trips(backend: Backend) -> None:
    body = "".join(chr(0x20 + i % 90) for i in range(1000)) * 10_000  # 10 MB, not one repeated char
    cp = backend.open()
    result = runner_for(cp).invoke(Paper(title="big", body=body), thread_id="big")
    assert isinstance(result, Completed)
    cp = backend.reopen(cp)
    history = cp.history("big")
    assert [c.step for c in history] == [3, 2, 1, 0]
    assert history[3].state.body == body
    assert history[0].state.body == body + f"[{len(body)}]!"
    assert cp.load("big") == result.checkpoint


# ----- a schema changed incompatibly between two runs --------------------------------------


@attrs.frozen
class NoteV1(StateSchema[Edit]):
    """Version 1 of a schema stored as table ``note``."""

    __qualname__ = "Note"
    title: str = ""
    stage: Stage = "draft"
    count: int = 0

    def apply(self, update: Edit) -> NoteV1:
        return NoteV1(self.title + update.text, update.stage or self.stage, self.count + 1)


@attrs.frozen
class NoteCountIsText(StateSchema[Edit]):
    """``count`` changed type."""

    __qualname__ = "Note"
    title: str = ""
    stage: Stage = "draft"
    count: str = ""

    def apply(self, update: Edit) -> NoteCountIsText:
        return self


@attrs.frozen
class NoteWithoutStage(StateSchema[Edit]):
    """``stage`` was removed."""

    __qualname__ = "Note"
    schema_version: ClassVar[int] = 2
    title: str = ""
    count: int = 0

    def apply(self, update: Edit) -> NoteWithoutStage:
        return self


StageV2: TypeAlias = Literal["draft", "published"]


@attrs.frozen
class NoteNarrowStage(StateSchema[Edit]):
    """``stage`` lost the values "review" and "done" (the column type is the same)."""

    __qualname__ = "Note"
    title: str = ""
    stage: StageV2 = "draft"
    count: int = 0

    def apply(self, update: Edit) -> NoteNarrowStage:
        return self


@NoteV1.node
def draft(state: NoteV1) -> Edit:
    return Edit(text="d")


@NoteV1.node
def review(state: NoteV1) -> Edit:
    return Edit(text="r", stage="review")


def note_runner(cp: DuckDBCheckpointer[NoteV1]) -> Runner[NoteV1]:
    return Runner(
        NoteV1,
        nodes=[draft, review],
        entry="draft",
        edges={"draft": "review"},
        interrupt_before=["review"],
        checkpointer=cp,
    )


@pytest.fixture
def note_file(tmp_path: Path) -> Path:
    """A file where run ``n`` stopped before ``review`` (steps 0..1, stage "draft")."""
    path = tmp_path / "notes.duckdb"
    with DuckDBCheckpointer(NoteV1, path) as cp:
        assert isinstance(note_runner(cp).invoke(NoteV1(), thread_id="n"), Interrupted)
    return path


@pytest.mark.parametrize(
    ("schema", "field", "words"),
    [
        (NoteCountIsText, "state.count", "changed type from BIGINT to VARCHAR"),
        (NoteWithoutStage, "state.stage", "was removed"),
    ],
    ids=["field-retyped", "field-removed"],
)
def test_a_schema_changed_between_runs_is_refused_and_the_old_run_resumes(
    note_file: Path, schema: type[StateSchema[Edit]], field: str, words: str
) -> None:
    before = raw_rows(note_file)
    with pytest.raises(IncompatibleSchemaError) as info:
        DuckDBCheckpointer(schema, note_file)
    assert info.value.field == field
    assert f"field {field} " in str(info.value)
    assert words in str(info.value)
    assert raw_rows(note_file) == before
    # The old schema reads every row and finishes the run.
    with DuckDBCheckpointer(NoteV1, note_file) as cp:
        done = note_runner(cp).resume("n")
        assert isinstance(done, Completed)
        assert done.state == NoteV1(title="dr", stage="review", count=2)


def test_a_narrowed_literal_fails_at_load_naming_field_and_step(note_file: Path) -> None:
    # Same column type, so the file opens; the rows whose value left the Literal cannot load.
    with DuckDBCheckpointer(NoteV1, note_file) as cp:
        note_runner(cp).resume("n")  # step 2 holds stage "review"
    before = raw_rows(note_file)
    with DuckDBCheckpointer(NoteNarrowStage, note_file) as cp:
        assert cp.load_at("n", 1).state == NoteNarrowStage(title="d", count=1)
        with pytest.raises(IncompatibleSchemaError) as info:
            cp.load("n")
        assert info.value.field == "checkpoint['n', step 2].state.stage"
        assert "thread 'n' at step 2 does not fit Note" in str(info.value)
    assert raw_rows(note_file) == before
    with DuckDBCheckpointer(NoteV1, note_file) as cp:
        assert cp.load("n").state.stage == "review"
