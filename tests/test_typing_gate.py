"""The typing gate: the typing tests in ``tests/typing`` pass mypy, and their mistakes bite.

The project's mypy run checks these files too; this test makes the gate part of the
test suite, and proves that every mistake marked in a ``fail_*`` file is still the
error its mark names (not merely that the file passes with its ignores).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from mypy import api as mypy_api

from tests.typing.pass_checkpointer import check_checkpointers
from tests.typing.pass_generic import acheck_generic, check_generic
from tests.typing.pass_nodes import check_nodes
from tests.typing.pass_runner import acheck_runner, check_runner
from tests.typing.pass_schemas import check_schemas

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
FAIL_FILES = sorted(TYPING.glob("fail_*.py"))

MARK = re.compile(
    r"\s*# type: ignore\[(?P<codes>[a-z-]+(?:, [a-z-]+)*)\]  # \S.*?(?: \(mypy: (?P<says>.+)\))?$"
)
"""A marked mistake: the error code(s) it must raise, why it must fail and, where the code
alone is too broad (``misc``, ``attr-defined``), ``(mypy: <part of the message>)``."""
ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)  \[(?P<code>[a-z-]+)\]$")
"""One error line of mypy's output (``--show-absolute-path``, error codes on)."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by this module's runs, so that only the first one checks typedflow."""
    return tmp_path_factory.mktemp("mypy-cache")


def run_mypy(cache_dir: Path, *paths: Path) -> tuple[int, str]:
    """Run mypy with the project's configuration on ``paths``; return its status and report."""
    stdout, stderr, status = mypy_api.run(
        [
            "--config-file",
            str(ROOT / "mypy.ini"),
            "--cache-dir",
            str(cache_dir),
            "--show-absolute-path",
            "--show-error-codes",
            "--no-pretty",
            "--no-color-output",
            *map(str, paths),
        ]
    )
    return status, stdout + stderr


def test_the_typing_files_pass_mypy(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy.ini's mypy_path, and the ``tests`` package the typing files import, are
    # relative to the project root.
    monkeypatch.chdir(ROOT)
    assert FAIL_FILES, "no fail_*.py files found"
    status, report = run_mypy(cache_dir, TYPING)
    assert status == 0, report
    assert "Success: no issues found" in report


@pytest.mark.parametrize("fail_file", FAIL_FILES, ids=lambda p: p.name)
def test_every_marked_mistake_is_the_error_it_names(
    fail_file: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    expected: dict[int, set[str]] = {}
    says: dict[int, str] = {}
    stripped: list[str] = []
    for number, line in enumerate(fail_file.read_text().splitlines(), start=1):
        if "type: ignore" in line:
            mark = MARK.search(line)
            assert mark is not None, (
                f"{fail_file.name}:{number}: mark a mistake as "
                f"'# type: ignore[<code>]  # <why it must fail>', got {line.strip()!r}"
            )
            expected[number] = set(mark["codes"].split(", "))
            if mark["says"] is not None:
                says[number] = mark["says"]
            line = line[: mark.start()]
        stripped.append(line)
    assert expected, f"{fail_file.name} marks no mistake"
    copy = tmp_path / fail_file.name
    copy.write_text("\n".join(stripped) + "\n")

    status, report = run_mypy(cache_dir, copy)

    reported: dict[int, set[str]] = {}
    messages: dict[int, list[str]] = {}
    for line in report.splitlines():
        error = ERROR.match(line)
        if error is None:
            continue
        assert Path(error["path"]) == copy, f"an error outside the file under test: {line}"
        reported.setdefault(int(error["line"]), set()).add(error["code"])
        messages.setdefault(int(error["line"]), []).append(error["message"])
    assert status == 1, report
    # Every marked line fails with exactly its marked code(s), and no other line fails.
    assert reported == expected, report
    # And where the mark quotes mypy, for the reason it gives.
    for number, message in says.items():
        assert any(message in m for m in messages[number]), (number, message, messages[number])


@pytest.mark.parametrize(
    "check",
    [
        check_schemas,
        check_nodes,
        check_runner,
        check_checkpointers,
        acheck_runner,
        check_generic,
        acheck_generic,
    ],
    ids=lambda f: f.__name__,
)
def test_the_typed_examples_run(check: Callable[[], object]) -> None:
    # The types asserted in the pass_* files describe what really happens.
    result = check()
    if asyncio.iscoroutine(result):
        asyncio.run(result)
