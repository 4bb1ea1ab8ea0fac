"""DuckDB backend, reading: a long history is read another way than a load (each distinct
shape of a row and each distinct update is fetched once), and must load exactly what was
saved all the same, share nothing a caller could change, and name what cannot be loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import cattrs
import pytest

from typedflow import (
    Checkpoint,
    IncompatibleSchemaError,
    InMemoryCheckpointer,
    NodeFailure,
    NodeWrite,
    ParentRef,
    SerializationError,
    StateSchema,
)
from typedflow._serde import Serde
from typedflow.checkpoint import duckdb as backend
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

T0 = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@attrs.frozen
class Note:
    """An update: a text to log and a score."""

    text: str
    """Appended to the log."""
    score: float = 0.0
    """A float, which DuckDB compares as equal for 0.0 and -0.0."""


@attrs.frozen
class Log(StateSchema[Note]):
    """A growing log of immutable items, a mutable growing list and a counter."""

    n: int = 0
    """How many updates were applied."""
    lines: tuple[str, ...] = ()
    """Grows by one line per update (stored as deltas)."""
    rows: list[list[int]] = attrs.field(factory=list)
    """Grows too; its items are mutable lists."""

    def apply(self, update: Note) -> Log:
        return Log(self.n + 1, (*self.lines, update.text), [*self.rows, [self.n]])


@attrs.frozen
class Tick:
    """An update with no float: equal updates of a long read are loaded once."""

    by: int
    """Added to the counter (no default: a NULL cannot mean "added later")."""


@attrs.frozen
class Count(StateSchema[Tick]):
    """A counter."""

    n: int = 0
    """The count."""

    def apply(self, update: Tick) -> Count:
        return Count(self.n + update.by)


@pytest.fixture(params=["short", "long", "short, ranged", "long, ranged"])
def read_as(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Read every range the way of a short read (a load), or of a long one (a history); and
    with the ranges of row ids a read looks up in a big table (see ``_locate``), or not."""
    param = str(request.param)
    monkeypatch.setattr(backend, "_MANY", 10**9 if param.startswith("short") else 1)
    monkeypatch.setattr(backend, "_RANGES_FROM", 0 if "ranged" in param else 10**18)
    return param


def varied(i: int, state: Log, update: Note) -> Checkpoint[Log]:
    """Checkpoint ``i`` of a thread whose steps differ in every way a checkpoint can."""
    kind = i % 5
    writes: tuple[NodeWrite[Note], ...] = (NodeWrite(node="log", updates=(update,), duration=0.5),)
    pending: tuple[NodeWrite[Note], ...] = ()
    failures: tuple[NodeFailure, ...] = ()
    status: str = "ok"
    if kind == 1:  # two nodes ran, one of them returned two updates and a goto
        writes = (
            NodeWrite(node="log", updates=(update, update), goto=("a", "b"), duration=1.5),
            NodeWrite(node="other", duration=-0.0),
        )
    elif kind == 2:  # a node failed while another finished
        status = "error"
        writes = ()
        pending = (NodeWrite(node="log", updates=(update,), duration=2.0),)
        failures = (NodeFailure(node="bad", error_type="builtins.ValueError", message="no"),)
    elif kind == 3:  # no node returned anything
        writes = (NodeWrite(node="log"),)
    return Checkpoint(
        thread_id="t1",
        step=i,
        state=state,
        next=() if kind == 4 else ("log", "other"),
        status=status,  # type: ignore[arg-type]  # one of the statuses, chosen above
        writes=writes,
        pending=pending,
        failures=failures,
        reason="why" if kind == 2 else None,
        duration=i / 7,
        created_at=T0 + timedelta(microseconds=i * 999_999),
        metadata={"run": "r1", "i": i % 3, "ok": True, "x": None, "f": 1.5},
        parent=ParentRef(thread_id="origin", step=3) if i == 0 else None,
    )


def save_varied(*backends: InMemoryCheckpointer[Log] | DuckDBCheckpointer[Log]) -> None:
    state = Log()
    for i in range(40):
        update = Note(f"line {i}", score=-0.0 if i % 2 else 0.0)
        if i:
            state = state.apply(update)
        for b in backends:
            b.save(varied(i, state, update))


def test_every_way_of_reading_loads_what_was_saved(read_as: str) -> None:
    ref = InMemoryCheckpointer(Log)
    with DuckDBCheckpointer(Log, snapshot_every=7) as cp:
        save_varied(ref, cp)
        assert cp.history("t1") == ref.history("t1")
        assert cp.history("t1", limit=9, before=30) == ref.history("t1", limit=9, before=30)
        for step in (0, 6, 7, 8, 39):
            assert cp.load_at("t1", step) == ref.load_at("t1", step)
        assert cp.load("t1") == ref.load("t1")
        # The sign of a zero survives, though DuckDB takes 0.0 and -0.0 for one value.
        for c in cp.history("t1"):
            for w in (*c.writes, *c.pending):
                for u in w.updates:
                    assert str(u.score) == ("-0.0" if c.step % 2 else "0.0")


def test_loaded_states_share_nothing_mutable(read_as: str) -> None:
    with DuckDBCheckpointer(Log, snapshot_every=7) as cp:
        save_varied(cp)
        listed = cp.history("t1")
        later, earlier = listed[0], listed[1]
        earlier.state.rows.append([99])
        earlier.state.rows[0].append(99)
        assert later.state.rows == [[i] for i in range(39)]
        assert later == cp.load("t1")


def test_equal_updates_of_a_long_read_are_one_immutable_object(read_as: str) -> None:
    ref = InMemoryCheckpointer(Count)
    with DuckDBCheckpointer(Count) as cp:
        for i in range(30):
            writes = (NodeWrite(node="tick", updates=(Tick(i % 2),)),) if i else ()
            c = Checkpoint(thread_id="t1", step=i, state=Count(i), next=("tick",), writes=writes)
            ref.save(c)
            cp.save(c)
        listed = cp.history("t1")
        assert listed == ref.history("t1")
        ones = {id(c.writes[0].updates[0]) for c in listed if c.step % 2 == 1}
        assert len(ones) == (1 if read_as.startswith("long") else 15)


def test_node_names_differing_in_case_stay_apart_under_a_case_blind_collation(
    read_as: str,
) -> None:
    ref = InMemoryCheckpointer(Count)
    with DuckDBCheckpointer(Count) as cp:
        cp.connection.execute("SET default_collation = 'nocase'")
        try:
            for i in range(6):
                node = "Tick" if i % 2 else "tick"
                writes = (NodeWrite(node=node, updates=(Tick(1),)),)
                c = Checkpoint(thread_id="t1", step=i, state=Count(i), next=(node,), writes=writes)
                ref.save(c)
                cp.save(c)
            assert cp.history("t1") == ref.history("t1")
        finally:
            cp.connection.execute("RESET default_collation")


def test_a_long_read_names_the_field_and_step_that_cannot_be_loaded(read_as: str) -> None:
    with DuckDBCheckpointer(Log, snapshot_every=7) as cp:
        save_varied(cp)
        cp.flush()  # checkpoints reach the typed tables on flush, reads and close
        cp.connection.execute(
            "UPDATE log_checkpoints SET state = struct_update(state, lines := [NULL]) "
            "WHERE step = 9"
        )
        with pytest.raises(IncompatibleSchemaError) as info:
            cp.history("t1")
        where = "checkpoint['t1', step 9].state.lines[8]"
        assert info.value.field == where
        assert where in str(info.value)
        assert cp.load_at("t1", 8).state.lines[-1] == "line 8"


def test_a_long_read_names_the_update_that_cannot_be_loaded(read_as: str) -> None:
    with DuckDBCheckpointer(Count) as cp:
        for i in range(30):
            writes = (NodeWrite(node="tick", updates=(Tick(1),)),) if i else ()
            cp.save(Checkpoint(thread_id="t1", step=i, state=Count(i), next=(), writes=writes))
        cp.flush()  # checkpoints reach the typed tables on flush, reads and close
        cp.connection.execute(
            "UPDATE count_updates SET value = struct_update(value, by := NULL) WHERE step = 12"
        )
        with pytest.raises(SerializationError) as info:
            cp.history("t1")
        where = "checkpoint['t1', step 12].writes[0].update"
        assert info.value.path.startswith(where)
        assert where in str(info.value)


def test_checkpoints_made_through_their_slots_equal_those_made_by_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from typedflow.checkpoint import _decode
    from typedflow.checkpoint.base import freeze_metadata

    assert _decode._checkpoint_setters is not None  # the fast path is the one in use
    assert _decode._write_setters is not None
    when = datetime(2026, 1, 2, tzinfo=UTC)

    def made() -> tuple[object, object]:
        w = _decode.make_write("n", (1,), ("m",), 0.5)
        cp = _decode.make_checkpoint(
            "t",
            ("m",),
            "ok",
            (),
            None,
            None,
            freeze_metadata({"k": 1}),
            3,
            "s",
            (w,),
            (),
            1.5,
            when,
        )
        return w, cp

    fast = made()
    monkeypatch.setattr(_decode, "_checkpoint_setters", None)
    monkeypatch.setattr(_decode, "_write_setters", None)
    assert made() == fast


def test_equal_updates_of_several_writes_and_pending_ones_load_in_order(read_as: str) -> None:
    ref = InMemoryCheckpointer(Count)
    with DuckDBCheckpointer(Count) as cp:
        for i in range(24):
            ones = (Tick(1), Tick(2), Tick(1))[: i % 4]
            writes = (
                NodeWrite(node="a", updates=ones),
                NodeWrite(node="b", updates=(Tick(2), Tick(2))),
            )
            pending = (NodeWrite(node="c", updates=(Tick(i % 3),)),) if i % 2 else ()
            c = Checkpoint(
                thread_id="t1",
                step=i,
                state=Count(i),
                next=("a",),
                status="interrupted" if i % 2 else "ok",
                writes=writes,
                pending=pending,
            )
            ref.save(c)
            cp.save(c)
        assert cp.history("t1") == ref.history("t1")
        assert cp.load_at("t1", 7) == ref.load_at("t1", 7)


def _strip(text: str) -> str:
    return text.strip()


@attrs.frozen
class Checked(StateSchema[Tick]):
    """A state whose class checks and converts its fields: loading must call its ``__init__``."""

    n: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Never negative."""
    name: str = attrs.field(default="", converter=_strip)
    """Stored stripped."""
    ratio: float | None = None
    """Optional."""

    def apply(self, update: Tick) -> Checked:
        return Checked(self.n + update.by, self.name, self.ratio)


def test_a_state_of_plain_fields_is_made_by_its_class_checks_included(read_as: str) -> None:
    with DuckDBCheckpointer(Checked) as cp:
        for i in range(3):
            state = Checked(i, f" n{i} ", None if i % 2 else i / 2)
            cp.save(Checkpoint(thread_id="t1", step=i, state=state, next=("x",)))
        assert [c.state for c in cp.history("t1")] == [
            Checked(2, "n2", 1.0),
            Checked(1, "n1", None),
            Checked(0, "n0", 0.0),
        ]
        cp.connection.execute(
            "UPDATE checked_checkpoints SET state = struct_update(state, n := -1) WHERE step = 1"
        )
        # The validator runs on load: the stored value is refused.
        with pytest.raises(IncompatibleSchemaError, match="invalid value") as caught:
            cp.load_at("t1", 1)
        assert caught.value.field == "checkpoint['t1', step 1].state"


def test_only_typedflows_own_converter_lets_a_state_be_made_by_its_class() -> None:
    assert Serde(Checked).callable_directly()
    assert Serde(Count).callable_directly()
    # The user's converter may hold hooks of their own for these types.
    assert not Serde(Checked, cattrs.Converter()).callable_directly()
    # Growable fields must be loaded first.
    assert not Serde(Log).callable_directly()
    assert Serde(Log).callable_directly(("lines", "rows"))


@attrs.frozen
class Word:
    """An update whose text may differ from another's in case only."""

    text: str
    """The text."""


@attrs.frozen
class Words(StateSchema[Word]):
    """The last word seen."""

    last: str = ""
    """The last word."""

    def apply(self, update: Word) -> Words:
        return Words(update.text)


def test_updates_differing_in_case_stay_apart_under_a_case_blind_collation(
    read_as: str,
) -> None:
    # DuckDB groups, and hashes, text under the collation: a long read reads row by row then.
    ref = InMemoryCheckpointer(Words)
    with DuckDBCheckpointer(Words) as cp:
        cp.connection.execute("SET default_collation = 'nocase'")
        try:
            for i in range(6):
                word = Word("Tick" if i % 2 else "tick")
                writes = (NodeWrite(node="say", updates=(word,)),)
                c = Checkpoint(
                    thread_id="t1", step=i, state=Words(word.text), next=(), writes=writes
                )
                ref.save(c)
                cp.save(c)
            assert cp.history("t1") == ref.history("t1")
        finally:
            cp.connection.execute("RESET default_collation")


@attrs.frozen
class Pair(StateSchema[Tick]):
    """Two plain fields, the second added later (see :class:`PairV2`)."""

    __qualname__ = "Pair"
    n: int = 0
    """A counter."""

    def apply(self, update: Tick) -> Pair:
        return Pair(self.n + update.by)


@attrs.frozen
class PairV2(StateSchema[Tick]):
    """:class:`Pair` with a field added, whose default older rows load with."""

    __qualname__ = "Pair"
    n: int = 0
    """A counter."""
    label: str = "none"
    """Added later: NULL in the older rows."""

    def apply(self, update: Tick) -> PairV2:
        return PairV2(self.n + update.by, self.label)


def test_a_field_added_later_loads_as_its_default_in_every_way_of_reading(
    read_as: str, tmp_path: Path
) -> None:
    path = tmp_path / "pair.duckdb"
    with DuckDBCheckpointer(Pair, path) as old:
        for i in range(4):
            old.save(Checkpoint(thread_id="t1", step=i, state=Pair(i), next=("x",)))
    with DuckDBCheckpointer(PairV2, path) as cp:
        cp.save(Checkpoint(thread_id="t1", step=4, state=PairV2(4, "four"), next=()))
        assert [c.state for c in cp.history("t1")] == [
            PairV2(4, "four"),
            *(PairV2(i) for i in reversed(range(4))),
        ]


@attrs.frozen(kw_only=True)
class Named(StateSchema[Tick]):
    """Plain fields that are keyword-only: the state cannot be made from them in order."""

    n: int = 0
    """A counter."""
    name: str | None = None
    """Optional."""

    def apply(self, update: Tick) -> Named:
        return Named(n=self.n + update.by, name=self.name)


def test_a_state_of_keyword_only_fields_loads_in_every_way_of_reading(read_as: str) -> None:
    ref = InMemoryCheckpointer(Named)
    with DuckDBCheckpointer(Named) as cp:
        for i in range(5):
            state = Named(n=i, name=None if i % 2 else f"n{i}")
            c = Checkpoint(thread_id="t1", step=i, state=state, next=("x",))
            ref.save(c)
            cp.save(c)
        assert cp.history("t1") == ref.history("t1")


@attrs.frozen
class Grow(StateSchema[Tick]):
    """Growing fields that may also start over, of text and of floats."""

    words: tuple[str, ...] = ()
    """Grows, or is replaced."""
    zeros: tuple[float, ...] = ()
    """Grows, with zeros of either sign, or is replaced."""

    def apply(self, update: Tick) -> Grow:
        return self


def test_full_rows_that_repeat_or_replace_the_items_so_far_load_exactly(read_as: str) -> None:
    # A full row every 3 steps: one that repeats the items so far needs only its new ones
    # loaded; one whose items start over, or differ in the sign of a zero, is loaded in full.
    ref = InMemoryCheckpointer(Grow)
    with DuckDBCheckpointer(Grow, snapshot_every=3) as cp:
        words: tuple[str, ...] = ()
        zeros: tuple[float, ...] = ()
        for i in range(20):
            if i in (7, 13):
                words, zeros = (f"again {i}",), (float(i),)
            elif i % 3 == 0:
                # Saved in full (a multiple of 3): the signs of the zeros so far flip.
                words, zeros = (*words, f"w{i}"), (*(-z for z in zeros), -0.0)
            else:
                words, zeros = (*words, f"w{i}"), (*zeros, 0.0)
            c = Checkpoint(thread_id="t1", step=i, state=Grow(words, zeros), next=("x",))
            ref.save(c)
            cp.save(c)
        listed = cp.history("t1")
        assert listed == ref.history("t1")
        assert cp.history("t1", limit=5, before=17) == ref.history("t1", limit=5, before=17)
        for got, saved in zip(listed, ref.history("t1"), strict=True):
            assert [str(z) for z in got.state.zeros] == [str(z) for z in saved.state.zeros]


def test_reads_do_not_rely_on_the_order_rows_are_stored_in(read_as: str) -> None:
    # Without ORDER BY, DuckDB returns rows in no promised order (a table rewritten by an
    # analyst, a parallel scan): reading sorts them itself.
    ref = InMemoryCheckpointer(Log)
    with DuckDBCheckpointer(Log, snapshot_every=7) as cp:
        save_varied(ref, cp)
        cp.flush()
        con = cp.connection
        for table in ("log_checkpoints", "log_updates"):
            con.execute(f"CREATE TEMP TABLE shuffled AS SELECT * FROM {table} ORDER BY hash(step)")
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} SELECT * FROM shuffled ORDER BY step DESC")
            con.execute("DROP TABLE shuffled")
        stored = [r[0] for r in con.execute("SELECT step FROM log_checkpoints").fetchall()]
        assert stored != sorted(stored)  # the scan does meet them out of order
        assert cp.history("t1") == ref.history("t1")
        for step in (0, 6, 7, 8, 20, 39):
            assert cp.load_at("t1", step) == ref.load_at("t1", step)
        assert cp.load("t1") == ref.load("t1")


@pytest.mark.parametrize("shift", ["inside", "after", "before"])
@pytest.mark.parametrize("many", [10**9, 1], ids=["short", "long"])
def test_a_read_whose_row_ids_moved_since_it_looked_them_up_reads_again(
    shift: str, many: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "_MANY", many)
    monkeypatch.setattr(backend, "_RANGES_FROM", 0)  # as in a big table
    """A read scans only the row ids its first query found the thread's checkpoints and
    updates in; when rows have moved since (a checkpoint compacts deleted rows), it finds fewer
    rows than steps (or updates than their writes say) and reads again without the range."""
    ref = InMemoryCheckpointer(Log)
    with DuckDBCheckpointer(Log, snapshot_every=7) as cp:
        save_varied(ref, cp)
        locate = cp._locate

        def stale(rowids: tuple[int, int] | None) -> tuple[int, int]:
            assert rowids is not None
            high = rowids[1]
            moves = {"inside": (high, high), "after": (high + 1, high + 99), "before": (-9, -1)}
            return moves[shift]

        def moved(thread_id: str, step: int | None) -> object:
            found = locate(thread_id, step)
            assert found is not None
            return found._replace(
                checkpoint_rowids=stale(found.checkpoint_rowids),
                update_rowids=stale(found.update_rowids),
            )

        monkeypatch.setattr(cp, "_locate", moved)
        for step in (0, 6, 7, 8, 20, 39):
            assert cp.load_at("t1", step) == ref.load_at("t1", step)
        assert cp.load("t1") == ref.load("t1")
        assert cp.history("t1") == ref.history("t1")
        assert cp.history("t1", limit=9, before=30) == ref.history("t1", limit=9, before=30)
