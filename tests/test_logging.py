"""Log records of the ``typedflow.runner`` logger carry the thread, the step and the node."""

from __future__ import annotations

import logging

import attrs
import pytest

from typedflow import NodeError, ReducerError, Runner, StateSchema

LOGGER = "typedflow.runner"


@attrs.frozen
class Note:
    """An update: one line of text for the log."""

    text: str
    """The line to append; ``"poison"`` makes the reducer raise."""


@attrs.frozen
class Log(StateSchema[Note]):
    """A state that records every update in the order the reducer applied it."""

    lines: tuple[str, ...] = ()
    """The applied updates' texts, oldest first."""

    def apply(self, update: Note) -> Log:
        if update.text == "poison":
            raise ValueError("cannot digest poison")
        return Log(lines=(*self.lines, update.text))


@Log.node
def start(state: Log) -> Note:
    return Note("start")


@Log.node
def left(state: Log) -> Note:
    return Note("left")


@Log.node
def right(state: Log) -> list[Note]:
    return [Note("r1"), Note("r2")]


@Log.node
def broken(state: Log) -> Note:
    raise RuntimeError("broken on purpose")


@Log.node
def poison(state: Log) -> Note:
    return Note("poison")


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def context(record: logging.LogRecord, *keys: str) -> tuple[object, ...]:
    """The ``extra`` fields of a record (``None`` where missing)."""
    return tuple(getattr(record, key, None) for key in keys)


def test_debug_records_name_thread_step_and_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    runner = Runner(
        Log, nodes=[start, left, right], entry="start", edges={"start": ["left", "right"]}
    )
    runner.invoke(Log(), thread_id="t-log")
    logged = records(caplog)
    assert logged
    assert all(r.levelno == logging.DEBUG for r in logged)
    assert all(getattr(r, "thread_id", None) == "t-log" for r in logged)
    per_node = [context(r, "step", "node") for r in logged if hasattr(r, "node")]
    assert per_node == [(1, "start"), (2, "left"), (2, "right")]
    per_step = [context(r, "step", "nodes") for r in logged if hasattr(r, "nodes")]
    assert per_step == [(1, ["start"]), (2, ["left", "right"])]
    right_record = next(r for r in logged if getattr(r, "node", None) == "right")
    assert "'right'" in right_record.getMessage()
    assert "2 update(s)" in right_record.getMessage()


def test_a_successful_run_is_quiet_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    Runner(Log, nodes=[start], entry="start").invoke(Log(), thread_id="t")
    assert records(caplog) == []


def test_a_node_failure_is_logged_with_its_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    runner = Runner(
        Log, nodes=[start, left, broken], entry="start", edges={"start": ["left", "broken"]}
    )
    with pytest.raises(NodeError):
        runner.invoke(Log(), thread_id="t-fail")
    warnings = [r for r in records(caplog) if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    (warning,) = warnings
    assert warning.levelno == logging.WARNING
    assert context(warning, "thread_id", "step", "node") == ("t-fail", 2, "broken")
    message = warning.getMessage()
    assert "'t-fail'" in message
    assert "step 2" in message
    assert "'broken'" in message


def test_a_reducer_failure_is_logged_with_its_node(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    runner = Runner(Log, nodes=[start, poison], entry="start", edges={"start": "poison"})
    with pytest.raises(ReducerError):
        runner.invoke(Log(), thread_id="t-reduce")
    (warning,) = records(caplog)
    assert context(warning, "thread_id", "step", "node") == ("t-reduce", 2, "poison")
    assert "ReducerError" in warning.getMessage()
