"""Must fail mypy: a runner mixed with another schema's nodes, checkpointers, states and updates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from tests.typing.fail_nodes import other_node
from tests.typing.pass_nodes import inc
from tests.typing.pass_schemas import Counter, Other, Reset, Tally
from typedflow import END, Checkpoint, HistoryCheckpointer, Runner, RunResult
from typedflow.checkpoint.duckdb import DuckDBCheckpointer


def route_by_number(state: Counter) -> int:
    return state.n


def route_of_other(state: Other) -> str:
    return END


# ----- building a runner --------------------------------------------------------------------


def node_of_another_schema() -> None:
    Runner(Counter, nodes=[other_node], entry="other_node")  # type: ignore[misc]  # S cannot be both Counter and Other (mypy: Cannot infer value of type parameter "S" of "Runner")


def node_of_another_schema_annotated() -> Runner[Counter]:
    return Runner(Counter, nodes=[other_node], entry="other_node")  # type: ignore[list-item]  # Node[Other] is no Node[Counter]


def one_node_of_another_schema() -> None:
    Runner(Counter, nodes=[inc, other_node], entry="inc")  # type: ignore[list-item]  # one stray node is enough


def checkpointer_of_another_schema(saver: HistoryCheckpointer[Other]) -> None:
    Runner(Counter, nodes=[inc], entry="inc", checkpointer=saver)  # type: ignore[misc]  # S cannot be both Counter and Other (mypy: Cannot infer value of type parameter "S" of "Runner")


def checkpointer_of_another_schema_annotated(saver: HistoryCheckpointer[Other]) -> Runner[Counter]:
    return Runner(Counter, nodes=[inc], entry="inc", checkpointer=saver)  # type: ignore[arg-type]  # it stores Other states


def duckdb_of_another_schema(db: DuckDBCheckpointer[Other]) -> Runner[Counter]:
    return Runner(Counter, nodes=[inc], entry="inc", checkpointer=db)  # type: ignore[arg-type]  # it stores Other states


def route_returning_int() -> None:
    Runner(Counter, nodes=[inc], entry="inc", routes={"inc": route_by_number})  # type: ignore[dict-item]  # a route names nodes: str, not int


def lambda_route_returning_int() -> None:
    Runner(Counter, nodes=[inc], entry="inc", routes={"inc": lambda s: s.n})  # type: ignore[dict-item, return-value]  # a route names nodes: str, not int


def route_of_another_schema() -> None:
    Runner(Counter, nodes=[inc], entry="inc", routes={"inc": route_of_other})  # type: ignore[dict-item]  # the route reads an Other


def lambda_route_reads_the_schema() -> None:
    Runner(Other, nodes=[other_node], entry="other_node", routes={"other_node": lambda s: s.n})  # type: ignore[attr-defined]  # s is an Other, which has no n (mypy: "Other" has no attribute "n")


# ----- running it ---------------------------------------------------------------------------


def invoke_with_another_state(runner: Runner[Counter]) -> None:
    runner.invoke(Other())  # type: ignore[arg-type]  # the input is a Counter


async def ainvoke_with_another_state(runner: Runner[Counter]) -> None:
    await runner.ainvoke(Other())  # type: ignore[arg-type]  # the input is a Counter


def stream_another_state(runner: Runner[Counter]) -> Iterator[Checkpoint[Counter]]:
    return runner.stream(Other())  # type: ignore[arg-type]  # the input is a Counter


def astream_another_state(runner: Runner[Counter]) -> AsyncIterator[Checkpoint[Counter]]:
    return runner.astream(Other())  # type: ignore[arg-type]  # the input is a Counter


def resume_with_wrong_update(runner: Runner[Counter]) -> None:
    runner.resume("t", update=Reset())  # type: ignore[arg-type]  # Counter's update type is Inc


async def aresume_with_wrong_update(runner: Runner[Counter]) -> None:
    await runner.aresume("t", update=Reset())  # type: ignore[arg-type]  # Counter's update type is Inc


def resume_with_a_state(runner: Runner[Tally]) -> None:
    runner.resume("t", update=Tally())  # type: ignore[arg-type]  # an update, not a state


def fork_with_wrong_update(runner: Runner[Counter]) -> None:
    runner.fork("t", 1, "t2", update=Reset())  # type: ignore[arg-type]  # Counter's update type is Inc


# ----- what a run gives back ----------------------------------------------------------------


def missing_attribute(result: RunResult[Counter]) -> str:
    return str(result.state.label)  # type: ignore[attr-defined]  # the state is a Counter, not Any (mypy: "Counter" has no attribute "label")


def state_as_another_schema(result: RunResult[Counter]) -> Other:
    return result.state  # type: ignore[return-value]  # the state is a Counter


def result_as_another_schema(runner: Runner[Counter]) -> RunResult[Other]:
    return runner.invoke(Counter())  # type: ignore[return-value]  # a run of Counter


def reason_without_narrowing(result: RunResult[Counter]) -> str:
    return result.reason  # type: ignore[union-attr]  # only an Interrupted result has a reason


def streamed_state_attribute(runner: Runner[Counter]) -> str:
    for checkpoint in runner.stream(Counter()):
        return str(checkpoint.state.label)  # type: ignore[attr-defined]  # a Counter, not Any (mypy: "Counter" has no attribute "label")
    return ""
