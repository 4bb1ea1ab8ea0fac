"""Must fail mypy: a checkpointer and its checkpoints are typed by one schema."""

from __future__ import annotations

from tests.typing.pass_schemas import Counter, Inc, Other, Reset
from typedflow import Checkpoint, Checkpointer, HistoryCheckpointer, InMemoryCheckpointer, NodeWrite
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


def fork_with_wrong_update(saver: InMemoryCheckpointer[Counter]) -> None:
    saver.fork("t", 0, "t2", update=Reset())  # type: ignore[arg-type]  # Counter's update type is Inc


def fork_with_wrong_update_via_contract(saver: HistoryCheckpointer[Counter]) -> None:
    saver.fork("t", 0, "t2", update="edit")  # type: ignore[arg-type]  # Counter's update type is Inc


def duckdb_fork_with_wrong_update(db: DuckDBCheckpointer[Counter]) -> None:
    db.fork("t", 0, "t2", update=Reset())  # type: ignore[arg-type]  # Counter's update type is Inc


def fork_with_update_class(saver: InMemoryCheckpointer[Counter]) -> None:
    saver.fork("t", 0, "t2", update=Inc)  # type: ignore[arg-type]  # an Inc value, not the class


def save_another_schema(saver: InMemoryCheckpointer[Counter], cp: Checkpoint[Other]) -> None:
    saver.save(cp)  # type: ignore[arg-type]  # it stores Counter states


def checkpointer_of_another_schema() -> Checkpointer[Counter]:
    return InMemoryCheckpointer(Other)  # type: ignore[arg-type]  # made for Other


def load_as_another_schema(saver: InMemoryCheckpointer[Counter]) -> Checkpoint[Other]:
    return saver.load("t")  # type: ignore[return-value]  # it loads Counter checkpoints


def history_as_another_schema(saver: InMemoryCheckpointer[Counter]) -> list[Checkpoint[Other]]:
    return saver.history("t")  # type: ignore[return-value]  # it loads Counter checkpoints


def state_as_another_schema(cp: Checkpoint[Counter]) -> Other:
    return cp.state  # type: ignore[return-value]  # the state is a Counter


def missing_attribute(cp: Checkpoint[Counter]) -> str:
    return str(cp.state.label)  # type: ignore[attr-defined]  # the state is a Counter, not Any (mypy: "Counter" has no attribute "label")


def write_as_another_update(cp: Checkpoint[Counter]) -> Reset:
    return cp.writes[0].updates[0]  # type: ignore[return-value]  # the writes hold Inc updates


def pending_as_another_update(cp: Checkpoint[Counter]) -> tuple[NodeWrite[Reset], ...]:
    return cp.pending  # type: ignore[return-value]  # the pending writes hold Inc updates


def failure_duration_without_a_check(cp: Checkpoint[Counter]) -> float:
    ran: float = cp.failures[0].duration  # type: ignore[assignment]  # None for reducer and route failures
    return ran
