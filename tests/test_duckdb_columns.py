"""DuckDB backend: states and updates are typed columns that plain SQL reads, values that
cannot be stored are refused naming the field, and rows edited by hand fail loudly on load."""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import attrs
import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from typedflow import (
    END,
    UNSET,
    Checkpoint,
    CheckpointError,
    IncompatibleSchemaError,
    NodeWrite,
    Runner,
    SerializationError,
    StateSchema,
    Unset,
    field,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.reducers import add, append

T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


class Color(enum.Enum):
    """An enum with string values (stored as VARCHAR)."""

    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    """A nested class inside a nested class."""

    x: int
    """An integer."""
    y: float
    """A float."""


@attrs.frozen
class Inner:
    """A nested class (stored as a STRUCT)."""

    title: str
    """A string."""
    point: Point
    """A nested class."""
    tags: tuple[str, ...] = ()
    """A list inside the structure."""
    seen_at: datetime | None = None
    """A nullable timestamp inside the structure."""


@attrs.frozen
class Cat:
    """One member of a union of attrs classes."""

    name: str
    """The cat's name."""


@attrs.frozen
class Dog:
    """Another member; it has the same first field as Cat, so only a tag tells them apart."""

    name: str
    """The dog's name."""
    good: bool = True
    """Whether it is a good dog."""


@attrs.frozen
class EverythingUpdate:
    """The update type of :class:`Everything`."""

    n: int | Unset = UNSET
    """Added to ``n``."""
    items: str | Unset = UNSET
    """Appended to ``items``."""
    inner: Inner | Unset = UNSET
    """Replaces ``inner``."""
    friend: Cat | Dog | Unset | None = UNSET
    """Replaces ``friend``."""
    maybe: int | Unset | None = UNSET
    """Replaces ``maybe``."""
    when: datetime | Unset = UNSET
    """Replaces ``when``."""


@attrs.frozen
class Everything(StateSchema[EverythingUpdate]):
    """A state with a field of every kind of type the DuckDB backend maps to a column type."""

    n: int = field(default=0, reducer=add)
    """BIGINT."""
    ratio: float = 0.0
    """DOUBLE."""
    name: str = ""
    """VARCHAR."""
    flag: bool = False
    """BOOLEAN."""
    raw: bytes = b""
    """BLOB."""
    when: datetime = T0
    """TIMESTAMPTZ (aware datetimes only)."""
    day: date = date(2025, 3, 4)
    """DATE."""
    clock: time = time(5, 6, 7)
    """TIME."""
    span: timedelta = timedelta(0)
    """INTERVAL."""
    price: Decimal = Decimal("0")
    """VARCHAR, the exact text."""
    maybe: int | None = None
    """A nullable BIGINT."""
    items: tuple[str, ...] = field(default=(), reducer=append)
    """VARCHAR[]."""
    nums: tuple[int, ...] = ()
    """BIGINT[]."""
    stamps: tuple[datetime, ...] = ()
    """TIMESTAMPTZ[]."""
    labels: frozenset[str] = frozenset()
    """VARCHAR[]."""
    inner: Inner = Inner("", Point(0, 0.0))
    """STRUCT."""
    scores: dict[str, float] = attrs.field(factory=dict)
    """MAP(VARCHAR, DOUBLE)."""
    mode: Literal["fast", "slow"] = "fast"
    """A Literal of strings: VARCHAR."""
    level: Literal[1, 2, 3] = 1
    """A Literal of ints: BIGINT."""
    color: Color = Color.RED
    """An Enum: the type of its values, VARCHAR."""
    pet: Cat | Dog = Cat("tom")
    """A union of attrs classes: JSON, tagged with ``_type``."""
    friend: Cat | Dog | None = None
    """An optional union of attrs classes: JSON or NULL."""


STATE_TYPES = {
    "n": "BIGINT",
    "ratio": "DOUBLE",
    "name": "VARCHAR",
    "flag": "BOOLEAN",
    "raw": "BLOB",
    "when": "TIMESTAMP WITH TIME ZONE",
    "day": "DATE",
    "clock": "TIME",
    "span": "INTERVAL",
    "price": "VARCHAR",
    "maybe": "BIGINT",
    "items": "VARCHAR[]",
    "nums": "BIGINT[]",
    "stamps": "TIMESTAMP WITH TIME ZONE[]",
    "labels": "VARCHAR[]",
    "inner": (
        "STRUCT(title VARCHAR, point STRUCT(x BIGINT, y DOUBLE), tags VARCHAR[], "
        "seen_at TIMESTAMP WITH TIME ZONE)"
    ),
    "scores": "MAP(VARCHAR, DOUBLE)",
    "mode": "VARCHAR",
    "level": "BIGINT",
    "color": "VARCHAR",
    "pet": "JSON",
    "friend": "JSON",
}

RICH = Everything(
    n=7,
    ratio=0.25,
    name="Zoë \x00 nul",
    flag=True,
    raw=b"\x00\xff bytes",
    when=datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
    day=date(1999, 12, 31),
    clock=time(23, 1, 2, 345),
    span=timedelta(days=3, seconds=4, microseconds=5),
    price=Decimal("12.3400"),
    maybe=-3,
    items=("a", "b"),
    nums=(1, -(2**63), 2**63 - 1),
    stamps=(T0, datetime(1, 1, 1, tzinfo=UTC)),
    labels=frozenset({"x", "y"}),
    inner=Inner("in", Point(5, 1.5), ("t1",), seen_at=T0),
    scores={"a": 1.5, "b": -2.0},
    mode="slow",
    level=3,
    color=Color.BLUE,
    pet=Dog("rex", good=False),
    friend=Cat("felix"),
)


def checkpoint(
    step: int,
    state: Everything,
    *,
    thread_id: str = "t1",
    updates: tuple[EverythingUpdate, ...] = (),
) -> Checkpoint[Everything]:
    """A checkpoint whose step wrote ``updates`` (as node ``a``)."""
    return Checkpoint(
        thread_id=thread_id,
        step=step,
        state=state,
        next=("a",),
        writes=(NodeWrite(node="a", updates=updates),) if updates else (),
        created_at=T0 + timedelta(seconds=step),
    )


def column_types(con: duckdb.DuckDBPyConnection, struct: str, table: str) -> dict[str, str]:
    """The DuckDB type of each field of a STRUCT column, as DESCRIBE reports it."""
    rows = con.execute(f"DESCRIBE SELECT {struct}.* FROM {table}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def row_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """How many rows the checkpoints, updates and threads tables hold."""
    counts = []
    for table in ("everything_checkpoints", "everything_updates", "typedflow_threads"):
        row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        counts.append(int(row[0]))
    return counts[0], counts[1], counts[2]


@pytest.fixture
def cp() -> Iterator[DuckDBCheckpointer[Everything]]:
    with DuckDBCheckpointer(Everything) as checkpointer:
        yield checkpointer


# ----- typed columns -------------------------------------------------------------------------


@attrs.frozen
class Counter(StateSchema[int]):
    """A counter whose update is the amount to add."""

    n: int = 0
    """The count."""

    def apply(self, update: int) -> Counter:
        return Counter(self.n + update)


@Counter.node
def inc(state: Counter) -> int:
    return 1


def test_plain_sql_answers_a_state_field_at_every_step(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"
    checkpointer = DuckDBCheckpointer(Counter, path)
    runner = Runner(
        Counter,
        nodes=[inc],
        entry="inc",
        routes={"inc": lambda s: END if s.n >= 5 else "inc"},
        checkpointer=checkpointer,
    )
    runner.invoke(Counter(), thread_id="t1")
    runner.invoke(Counter(n=3), thread_id="t2")
    query = "SELECT step, state.n FROM counter_checkpoints WHERE thread_id = 't1' ORDER BY step"
    expected = [(s, s) for s in range(6)]
    assert checkpointer.connection.execute(query).fetchall() == expected
    checkpointer.close()
    # Without typedflow: a new connection on the closed file, read-only, as an analyst would.
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute(query).fetchall() == expected
        by_thread = con.execute(
            "SELECT thread_id, max(state.n), count(*) FROM counter_checkpoints "
            "GROUP BY thread_id ORDER BY thread_id"
        ).fetchall()
        assert by_thread == [("t1", 5, 6), ("t2", 5, 3)]
        # The updates table holds the int update as a BIGINT value.
        updates = con.execute(
            "SELECT sum(value), count(*) FROM counter_updates WHERE thread_id = 't1'"
        ).fetchone()
        assert updates == (5, 5)
    finally:
        con.close()


def test_every_field_has_a_typed_column(cp: DuckDBCheckpointer[Everything]) -> None:
    cp.save(checkpoint(0, RICH))
    con = cp.connection
    assert column_types(con, "state", "everything_checkpoints") == STATE_TYPES
    # information_schema tells the same: one STRUCT column, no opaque blob of the whole state.
    rows = con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'everything_checkpoints' AND column_name = 'state'"
    ).fetchall()
    assert len(rows) == 1
    assert rows[0][0].startswith('STRUCT(n BIGINT, ratio DOUBLE, "name" VARCHAR, flag BOOLEAN, ')


def test_sql_reads_the_values_of_typed_columns(cp: DuckDBCheckpointer[Everything]) -> None:
    cp.save(checkpoint(0, RICH))
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    row = cp.connection.execute(
        "SELECT state.n + 1, state.inner.point.x * 2, state.inner.tags[1], state.scores['b'], "
        "list_contains(state.labels, 'y'), state.color, state.mode, state.level, state.maybe, "
        "state.nums[3], epoch_us(state.when), state.day, state.span, state.price, state.raw, "
        "state.pet ->> '$._type', state.pet ->> '$.name', state.friend ->> '$._type' "
        "FROM everything_checkpoints"
    ).fetchone()
    assert row == (
        8,
        10,
        "t1",
        -2.0,
        True,
        "blue",
        "slow",
        3,
        -3,
        2**63 - 1,
        int(RICH.when.timestamp()) * 1_000_000 + RICH.when.microsecond,
        RICH.day,
        RICH.span,
        "12.3400",
        RICH.raw,
        "Dog",
        "rex",
        "Cat",
    )


def test_every_field_round_trips(cp: DuckDBCheckpointer[Everything]) -> None:
    first = checkpoint(0, Everything())
    second = checkpoint(
        1,
        RICH,
        updates=(
            EverythingUpdate(n=7, friend=Cat("felix")),
            EverythingUpdate(maybe=None, friend=None),
            EverythingUpdate(inner=RICH.inner, friend=Dog("rex")),
        ),
    )
    cp.save(first)
    cp.save(second)
    assert cp.load_at("t1", 0) == first
    loaded = cp.load("t1")
    assert loaded == second
    assert type(loaded.state.pet) is Dog
    assert type(loaded.state.friend) is Cat
    assert loaded.state.labels == frozenset({"x", "y"})
    assert isinstance(loaded.state.labels, frozenset)
    assert loaded.state.when.tzinfo is not None


def test_a_union_of_attrs_classes_is_tagged_json(cp: DuckDBCheckpointer[Everything]) -> None:
    # Cat and Dog share their only required field: without the tag they cannot be told apart.
    state = Everything(pet=Cat("same"), friend=Dog("same"))
    cp.save(checkpoint(0, state, updates=(EverythingUpdate(friend=Cat("same")),)))
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    pet, friend = cp.connection.execute(
        "SELECT state.pet, state.friend FROM everything_checkpoints"
    ).fetchone() or (None, None)
    assert (pet, friend) == (
        '{"name": "same", "_type": "Cat"}',
        '{"name": "same", "good": true, "_type": "Dog"}',
    )
    loaded = cp.load("t1")
    assert loaded.state == state
    assert type(loaded.state.pet) is Cat
    assert type(loaded.state.friend) is Dog
    assert type(loaded.writes[0].updates[0].friend) is Cat


@attrs.frozen
class Adopt:
    """An update whose union fields have no counterpart in its state."""

    pet: Cat | Dog | Unset = UNSET
    """Who was adopted."""
    backup: Cat | Dog | Unset | None = UNSET
    """Who else, if anyone."""


@attrs.frozen
class Shelter(StateSchema[Adopt]):
    """A state with a hand-written reducer that only counts adoptions."""

    adopted: int = 0
    """How many updates named a pet."""

    def apply(self, update: Adopt) -> Shelter:
        return Shelter(self.adopted + (update.pet is not UNSET))


@attrs.frozen
class Visit(StateSchema[Cat | Dog]):
    """A state whose update type is itself a union of attrs classes."""

    visits: int = 0
    """How many updates were applied."""

    def apply(self, update: Cat | Dog) -> Visit:
        return Visit(self.visits + 1)


def test_unions_in_updates_round_trip() -> None:
    adoptions = (
        Adopt(pet=Cat("same")),
        Adopt(pet=Dog("same"), backup=Cat("other")),
        Adopt(backup=None),
        Adopt(),
    )
    with DuckDBCheckpointer(Shelter) as shelter:
        saved = Checkpoint(
            thread_id="t1",
            step=0,
            state=Shelter(2),
            next=(),
            writes=(NodeWrite(node="a", updates=adoptions),),
        )
        shelter.save(saved)
        loaded = shelter.load("t1").writes[0].updates
        assert loaded == adoptions
        assert [type(u.pet) for u in loaded[:2]] == [Cat, Dog]
        assert loaded[2].backup is None
        assert loaded[3].backup is UNSET
    with DuckDBCheckpointer(Visit) as visit:
        visitors = (Cat("same"), Dog("same"))
        visit.save(
            Checkpoint(
                thread_id="t1",
                step=0,
                state=Visit(2),
                next=(),
                writes=(NodeWrite(node="a", updates=visitors),),
            )
        )
        columns = dict(r[:2] for r in visit.connection.execute("DESCRIBE visit_updates").fetchall())
        assert columns["value"] == "JSON"
        assert visit.load("t1").writes[0].updates == visitors
        assert [type(u) for u in visit.load("t1").writes[0].updates] == [Cat, Dog]


def test_update_values_are_typed(cp: DuckDBCheckpointer[Everything]) -> None:
    cp.save(
        checkpoint(
            0,
            RICH,
            updates=(
                EverythingUpdate(n=2, inner=Inner("u", Point(9, 0.5))),
                EverythingUpdate(items="x", maybe=None, friend=Dog("d")),
            ),
        )
    )
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    con = cp.connection
    assert column_types(con, "value", "everything_updates") == {
        "n": "BIGINT",
        "items": "VARCHAR",
        "inner": STATE_TYPES["inner"],
        "friend": "JSON",
        "maybe": "BIGINT",
        "when": "TIMESTAMP WITH TIME ZONE",
    }
    rows = con.execute(
        "SELECT seq, node, value.n, value.inner.point.x, value.items, value.maybe, "
        "value.friend ->> '$._type', list_sort(unset) FROM everything_updates ORDER BY seq"
    ).fetchall()
    assert rows == [
        (0, "a", 2, 9, None, None, None, ["friend", "items", "maybe", "when"]),
        # maybe=None is a value (NULL, not listed as unset), unlike the fields left UNSET.
        (1, "a", None, None, "x", None, "Dog", ["inner", "n", "when"]),
    ]


everything = st.builds(
    Everything,
    n=st.integers(-(2**63), 2**63 - 1),
    ratio=st.floats(allow_nan=False),
    name=st.text(),
    flag=st.booleans(),
    raw=st.binary(),
    when=st.datetimes(timezones=st.just(UTC)),
    day=st.dates(),
    clock=st.times(),
    span=st.timedeltas(),
    price=st.decimals(allow_nan=False, allow_infinity=False),
    maybe=st.none() | st.integers(-(2**63), 2**63 - 1),
    items=st.lists(st.text(), max_size=4).map(tuple),
    nums=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(tuple),
    stamps=st.lists(st.datetimes(timezones=st.just(UTC)), max_size=3).map(tuple),
    labels=st.frozensets(st.text(), max_size=4),
    inner=st.builds(
        Inner,
        title=st.text(),
        point=st.builds(Point, x=st.integers(-(2**63), 2**63 - 1), y=st.floats(allow_nan=False)),
        tags=st.lists(st.text(), max_size=3).map(tuple),
        seen_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    ),
    scores=st.dictionaries(st.text(), st.floats(allow_nan=False), max_size=4),
    mode=st.sampled_from(["fast", "slow"]),
    level=st.sampled_from([1, 2, 3]),
    color=st.sampled_from(Color),
    pet=st.builds(Cat, name=st.text()) | st.builds(Dog, name=st.text(), good=st.booleans()),
    friend=st.none() | st.builds(Cat, name=st.text()) | st.builds(Dog, name=st.text()),
)


@pytest.fixture(scope="module")
def shared() -> Iterator[DuckDBCheckpointer[Everything]]:
    """One checkpointer for every example of a property test (each example takes a new thread)."""
    with DuckDBCheckpointer(Everything, snapshot_every=3) as checkpointer:
        yield checkpointer


examples = itertools.count()


@given(states=st.lists(everything, min_size=1, max_size=4))
def test_generated_states_round_trip(
    shared: DuckDBCheckpointer[Everything], states: list[Everything]
) -> None:
    thread_id = f"example-{next(examples)}"
    saved = [checkpoint(i, s, thread_id=thread_id) for i, s in enumerate(states)]
    for c in saved:
        shared.save(c)
    assert list(reversed(shared.history(thread_id))) == saved


# ----- values that cannot be stored --------------------------------------------------------

NAIVE = datetime(2025, 1, 1, 12, 0)


@pytest.fixture(params=["step", "batch"])
def durable(request: pytest.FixtureRequest) -> Iterator[DuckDBCheckpointer[Everything]]:
    """A checkpointer in each durability mode, holding a valid step 0 of thread t1."""
    with DuckDBCheckpointer(Everything, durability=request.param, batch_size=100) as checkpointer:
        checkpointer.save(checkpoint(0, Everything(items=("a",))))
        checkpointer.flush()
        yield checkpointer


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (checkpoint(1, Everything(when=NAIVE)), "state.when"),
        (
            checkpoint(1, Everything(inner=Inner("x", Point(0, 0.0), seen_at=NAIVE))),
            "state.inner.seen_at",
        ),
        (checkpoint(1, Everything(stamps=(T0, NAIVE))), "state.stamps[1]"),
        (
            checkpoint(1, Everything(), updates=(EverythingUpdate(), EverythingUpdate(when=NAIVE))),
            "writes[0].updates[1].when",
        ),
    ],
    ids=["field", "nested", "list-item", "update"],
)
def test_a_naive_datetime_is_refused_at_save(
    durable: DuckDBCheckpointer[Everything], bad: Checkpoint[Everything], path: str
) -> None:
    before = row_counts(durable.connection)
    with pytest.raises(SerializationError) as info:
        durable.save(bad)
    assert info.value.path == path
    assert f"cannot store {path}" in str(info.value)
    assert "timezone" in str(info.value)
    durable.flush()  # nothing was buffered either
    assert row_counts(durable.connection) == before
    assert durable.load("t1").step == 0
    good = checkpoint(1, Everything(items=("a", "b")))
    durable.save(good)
    assert durable.load("t1") == good


def save_and_commit(cp: DuckDBCheckpointer[Everything], c: Checkpoint[Everything]) -> None:
    """Save and commit now (a batched save reaches DuckDB only when its buffer is committed)."""
    cp.save(c)
    cp.flush()


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (checkpoint(1, Everything(n=2**64)), "state.n"),
        (checkpoint(1, Everything(maybe=-(2**100))), "state.maybe"),
        (checkpoint(1, Everything(inner=Inner("x", Point(2**63, 0.0)))), "state.inner.point.x"),
        (checkpoint(1, Everything(nums=(1, 2, 2**70))), "state.nums[2]"),
        (checkpoint(1, Everything(name="lone \ud800 surrogate")), "state.name"),
        # A growing field is stored as a delta; the path still counts items of the full value.
        (checkpoint(1, Everything(items=("a", "b", "c \udfff"))), "state.items[2]"),
        (
            checkpoint(1, Everything(), updates=(EverythingUpdate(n=1), EverythingUpdate(n=2**64))),
            "writes[0].updates[1].n",
        ),
    ],
    ids=["field", "optional", "nested", "list-item", "surrogate", "delta", "update"],
)
def test_a_value_duckdb_cannot_store_names_its_path(
    durable: DuckDBCheckpointer[Everything], bad: Checkpoint[Everything], path: str
) -> None:
    before = row_counts(durable.connection)
    with pytest.raises(SerializationError) as info:
        save_and_commit(durable, bad)
    assert info.value.path == path
    assert f"cannot store {path} of thread 't1', step 1" in str(info.value)
    assert isinstance(info.value.__cause__, SerializationError)
    # Refused by typedflow's own check (a 65-bit int) or by DuckDB (a lone surrogate).
    assert isinstance(info.value.__cause__.__cause__, ValueError | UnicodeError | duckdb.Error)
    # Nothing of the step is stored, and the checkpointer goes on working.
    assert row_counts(durable.connection) == before
    assert durable.load("t1").step == 0
    good = checkpoint(1, Everything(items=("a", "b")), updates=(EverythingUpdate(n=1),))
    durable.save(good)
    durable.save(checkpoint(2, Everything(items=("a", "b", "c"))))
    durable.flush()
    assert durable.load_at("t1", 1) == good
    assert durable.load("t1").state.items == ("a", "b", "c")


def test_a_bad_value_in_a_batch_fails_only_its_own_thread() -> None:
    with DuckDBCheckpointer(Everything, durability="batch", batch_size=100) as cp:
        cp.save(checkpoint(0, Everything(), thread_id="a"))
        # typedflow's own checks refuse a 65-bit int at once, before it is buffered.
        with pytest.raises(SerializationError, match="thread 'b', step 0") as early:
            cp.save(checkpoint(0, Everything(n=2**64), thread_id="b"))
        assert early.value.path == "state.n"
        # DuckDB refuses a lone surrogate only when the buffer is written.
        cp.save(checkpoint(0, Everything(name="\ud800"), thread_id="b"))
        cp.save(checkpoint(1, Everything(items=("x",)), thread_id="a"))
        cp.save(checkpoint(1, Everything(items=("x",)), thread_id="b"))  # builds on b's step 0
        cp.save(checkpoint(0, Everything(), thread_id="c"))
        with pytest.raises(SerializationError) as info:
            cp.flush()
        assert info.value.path == "state.name"
        assert "thread 'b', step 0" in str(info.value)
        # The other threads' checkpoints, buffered with it, are stored.
        assert [c.step for c in cp.history("a")] == [1, 0]
        assert cp.load("a").state.items == ("x",)
        assert cp.load("c").step == 0
        assert {t.thread_id for t in cp.threads()} == {"a", "c"}
        # Thread b can start again.
        cp.save(checkpoint(0, Everything(), thread_id="b"))
        cp.flush()
        assert cp.load("b").step == 0


def test_a_saved_state_of_another_schema_is_refused(cp: DuckDBCheckpointer[Everything]) -> None:
    bad: Any = checkpoint(0, Everything())
    with pytest.raises(CheckpointError, match="stores Everything, got a state of type Counter"):
        cp.save(attrs.evolve(bad, state=Counter()))
    assert row_counts(cp.connection) == (0, 0, 0)


# ----- rows edited by hand -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            "state = struct_update(state, inner := struct_update(state.inner, title := NULL))",
            "state.inner.title",
        ),
        (
            """state = struct_update(state, pet := '{"_type": "Fish", "name": "nemo"}')""",
            "state.pet",
        ),
        ("""state = struct_update(state, pet := '[1, 2]')""", "state.pet"),
        ("state = struct_update(state, color := 'green')", "state.color"),
        ("state = struct_update(state, level := 7)", "state.level"),
    ],
    ids=["nested-null", "unknown-tag", "json-shape", "enum", "literal"],
)
def test_a_row_edited_out_of_shape_fails_naming_the_field(
    cp: DuckDBCheckpointer[Everything], edit: str, path: str
) -> None:
    saved = [checkpoint(i, attrs.evolve(RICH, n=i, items=("x",) * i)) for i in range(4)]
    for c in saved:
        cp.save(c)
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    cp.connection.execute(
        f"UPDATE everything_checkpoints SET {edit} WHERE thread_id = 't1' AND step = 2"
    )
    with pytest.raises(IncompatibleSchemaError) as info:
        cp.load_at("t1", 2)
    where = f"checkpoint['t1', step 2].{path}"
    assert info.value.field == where
    assert where in str(info.value)
    # The thread's other rows, before and after (deltas built on the edited row), still load.
    for c in (saved[0], saved[1], saved[3]):
        assert cp.load_at("t1", c.step) == c
    assert cp.load("t1") == saved[3]


@attrs.frozen
class Strict(StateSchema[int]):
    """A state whose field has no default, so a NULL in it cannot mean "added later"."""

    n: int
    """The count."""
    log: tuple[int, ...] = ()
    """Every count so far (a growing field, stored as deltas)."""

    def apply(self, update: int) -> Strict:
        return Strict(self.n + update, (*self.log, self.n + update))


def test_a_null_in_a_field_without_default_fails_naming_the_field() -> None:
    with DuckDBCheckpointer(Strict) as cp:
        saved = [
            Checkpoint(thread_id="t1", step=i, state=Strict(i, tuple(range(1, i + 1))), next=())
            for i in range(4)
        ]
        for c in saved:
            cp.save(c)
        cp.flush()  # checkpoints reach the typed tables on flush, reads and close
        cp.connection.execute(
            "UPDATE strict_checkpoints SET state = struct_update(state, n := NULL) "
            "WHERE thread_id = 't1' AND step = 2"
        )
        with pytest.raises(IncompatibleSchemaError) as info:
            cp.load_at("t1", 2)
        assert info.value.field == "checkpoint['t1', step 2].state.n"
        assert "checkpoint['t1', step 2].state.n" in str(info.value)
        assert "does not fit Strict" in str(info.value)
        for c in (saved[0], saved[1], saved[3]):
            assert cp.load_at("t1", c.step) == c


def test_an_update_edited_out_of_shape_fails_naming_the_field(
    cp: DuckDBCheckpointer[Everything],
) -> None:
    good = checkpoint(0, RICH, updates=(EverythingUpdate(n=1),))
    cp.save(good)
    cp.save(checkpoint(1, RICH, updates=(EverythingUpdate(n=1), EverythingUpdate(friend=Cat("x")))))
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    cp.connection.execute(
        "UPDATE everything_updates SET value = struct_update(value, friend := '\"text\"') "
        "WHERE step = 1 AND seq = 1"
    )
    with pytest.raises(SerializationError) as info:
        cp.load("t1")
    where = "checkpoint['t1', step 1].writes[0].update.friend"
    assert info.value.path == where
    assert where in str(info.value)
    assert cp.load_at("t1", 0) == good


def test_the_database_refuses_garbage_in_a_json_column(cp: DuckDBCheckpointer[Everything]) -> None:
    cp.save(checkpoint(0, RICH))
    # JSON columns are typed: malformed text cannot even be stored by hand.
    cp.flush()  # checkpoints reach the typed tables on flush, reads and close
    with pytest.raises(duckdb.ConversionException):
        cp.connection.execute(
            "UPDATE everything_checkpoints SET state = struct_update(state, pet := 'garbage{')"
        )
    assert cp.load("t1").state == RICH
