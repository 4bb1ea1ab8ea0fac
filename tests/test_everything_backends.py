"""The "everything" state round-trips through every backend (STYLE: one class, every field type)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, reject, settings

from tests.everything import Everything, exactly_equal
from tests.strategies import checkpoints
from typedflow import Checkpoint, HistoryCheckpointer, InMemoryCheckpointer
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


def utc_everywhere(value: Any) -> Any:
    """``value`` with every datetime inside it made aware UTC.

    DuckDB keeps a datetime's instant (TIMESTAMPTZ), not its offset, and refuses naive
    datetimes; aware UTC datetimes come back exactly.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        try:
            return aware.astimezone(UTC)
        except OverflowError:
            reject()  # its instant is before year 1 or after 9999 in UTC: not storable
    if attrs.has(type(value)):
        changes = {
            a.name: utc_everywhere(getattr(value, a.name))
            for a in attrs.fields(type(value))
            if a.init
        }
        return attrs.evolve(value, **changes)
    if isinstance(value, tuple | list | frozenset):
        return type(value)(utc_everywhere(v) for v in value)
    if isinstance(value, dict):
        return {k: utc_everywhere(v) for k, v in value.items()}
    return value


def for_duckdb(cp: Checkpoint[Everything]) -> Checkpoint[Everything]:
    """The same checkpoint with every datetime made aware UTC."""
    return attrs.evolve(
        cp,
        state=utc_everywhere(cp.state),
        writes=utc_everywhere(cp.writes),
        pending=utc_everywhere(cp.pending),
        created_at=utc_everywhere(cp.created_at),
    )


def round_trip(cp: HistoryCheckpointer[Everything], original: Checkpoint[Everything]) -> None:
    saved = attrs.evolve(original, thread_id="t", step=0, parent=None)
    cp.save(saved)
    loaded = cp.load("t")
    assert exactly_equal(loaded.state, saved.state), (loaded.state, saved.state)
    assert exactly_equal(loaded.writes, saved.writes)
    assert exactly_equal(loaded.pending, saved.pending)
    assert (loaded.next, loaded.status, loaded.failures, loaded.reason) == (
        saved.next,
        saved.status,
        saved.failures,
        saved.reason,
    )
    assert dict(loaded.metadata) == dict(saved.metadata) or exactly_equal(
        dict(loaded.metadata), dict(saved.metadata)
    )


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(original=checkpoints())
def test_in_memory(original: Checkpoint[Everything]) -> None:
    round_trip(InMemoryCheckpointer(Everything), original)


@settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(original=checkpoints())
def test_duckdb(original: Checkpoint[Everything], tmp_path: Path) -> None:
    with DuckDBCheckpointer(Everything, ":memory:") as cp:
        round_trip(cp, for_duckdb(original))
