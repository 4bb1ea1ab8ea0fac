"""The wheel is what users install: the package alone, typed, and complete without the repository.

A user's ``mypy --strict`` sees typedflow as an installed package: it needs the
``py.typed`` marker, and it never sees this repository's ``mypy.ini`` or ``stubs/``. So
the last test checks a small user module against a copy unpacked from the wheel, with
an empty configuration, in a directory outside the repository.
"""

from __future__ import annotations

import contextlib
import email.parser
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from hatchling import build as backend

import typedflow

ROOT = Path(__file__).resolve().parent.parent

USER_MODULE = """
from __future__ import annotations

from typing import Any, TypeVar, assert_type

import attrs

import typedflow
from typedflow import (
    END,
    Checkpoint,
    Completed,
    HistoryCheckpointer,
    Interrupted,
    Runner,
    RunResult,
    StateSchema,
)
from typedflow.checkpoint.duckdb import DuckDBCheckpointer

S = TypeVar("S", bound=StateSchema[Any])


@attrs.frozen
class Inc:
    by: int = 1


@attrs.frozen
class Other:
    pass


@attrs.frozen
class Counter(StateSchema[Inc]):
    n: int = 0

    def apply(self, update: Inc) -> Counter:
        return Counter(n=self.n + update.by)


@Counter.node
def inc(state: Counter) -> Inc:
    return Inc()


def mistake(runner: Runner[Counter]) -> None:
    runner.resume("t", update=Other())  # type: ignore[arg-type]  # must stay an error


def fork_any(saver: HistoryCheckpointer[S], thread_id: str) -> Checkpoint[S]:
    return saver.fork(thread_id, 0, thread_id + "-fork")


with DuckDBCheckpointer(Counter, ":memory:") as saver:
    runner = Runner(
        Counter,
        nodes=[inc],
        entry="inc",
        routes={"inc": lambda s: END if s.n >= 2 else "inc"},
        checkpointer=saver,
    )
    result = runner.invoke(Counter(), thread_id="t")
    assert_type(result, RunResult[Counter])
    assert_type(result, Completed[Counter] | Interrupted[Counter])
    assert_type(saver.history("t")[0].writes[0].updates[0], Inc)
    assert_type(fork_any(saver, "t"), Checkpoint[Counter])
    print(result.state.n, typedflow.__file__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by the project's build backend (PEP 517's ``build_wheel``)."""
    out = tmp_path_factory.mktemp("dist")
    with contextlib.chdir(ROOT):
        name = backend.build_wheel(str(out))
    return out / name


def test_the_wheel_holds_the_package_and_its_py_typed_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = f"typedflow-{typedflow.__version__}.dist-info/"
    assert "typedflow/py.typed" in names
    assert f"{dist_info}licenses/LICENSE" in names
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "typedflow").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    # Nothing else: no tests, benchmarks, examples, stubs or scratch files.
    assert {n for n in names if not n.startswith(("typedflow/", dist_info))} == set()
    metadata = email.parser.Parser().parsestr(
        zipfile.ZipFile(wheel).read(f"{dist_info}METADATA").decode()
    )
    # ``typedflow.__version__`` and the packaging metadata say the same.
    assert metadata["Version"] == typedflow.__version__
    assert metadata["License-Expression"] == "MIT"
    assert "Typing :: Typed" in metadata.get_all("Classifier", [])
    assert 'duckdb>=2.0.1; extra == "duckdb"' in [
        r.replace("'", '"') for r in metadata.get_all("Requires-Dist", [])
    ]
    # The README is the package's description on the index, where a link to a path of
    # the repository leads nowhere: it names those paths instead.
    description = metadata.get_payload()
    assert isinstance(description, str)  # a single-part message: its payload is the text
    assert "## DuckDB: durable, queryable history" in description
    relative = re.findall(r"\]\((?!https?://|#)([^)]*)\)", description)
    assert relative == [], relative


def test_a_strict_user_module_checks_against_the_installed_wheel(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    user = tmp_path / "user"
    user.mkdir()
    (user / "usercode.py").write_text(USER_MODULE)
    (user / "mypy.ini").write_text("[mypy]\n")
    # ``-S``: no ``.pth`` files, so this repository's editable install is not on the path and
    # ``typedflow`` can only come from the unpacked wheel; the dependencies come from the
    # environment's site-packages.
    packages = [p for p in sys.path if p.endswith("site-packages")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *packages])}
    env.pop("MYPYPATH", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    checked = run("-m", "mypy", "--strict", "--config-file", "mypy.ini", "usercode.py")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found in 1 source file" in checked.stdout

    ran = run("usercode.py")
    assert ran.returncode == 0, ran.stderr
    n, path = ran.stdout.split()
    assert n == "2"
    assert Path(path).is_relative_to(site), path


def test_the_minimum_versions_ci_tests_are_the_lower_bounds_pyproject_allows() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["duckdb"]]
    lower = {}
    for requirement in declared:
        name, _, version = requirement.partition(">=")
        lower[name.strip().lower()] = version.strip()
    lines = (ROOT / "scripts" / "minimum-versions.txt").read_text().splitlines()
    pinned = dict(
        line.lower().split("==") for line in lines if line.strip() and not line.startswith("#")
    )
    assert pinned == lower
