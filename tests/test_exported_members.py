"""The public namespace is exactly ``typedflow.__all__``, sorted, and importing is light."""

from __future__ import annotations

import subprocess
import sys

import typedflow


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(typedflow) if not name.startswith("_")}
    # Submodules imported as a side effect are not part of the API, except ``reducers``.
    modules = {name for name in public if type(getattr(typedflow, name)).__name__ == "module"}
    # Sorted the isort way: CONSTANTS, then Classes, then functions and modules.
    kind = lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)  # noqa: E731
    assert typedflow.__all__ == sorted(set(typedflow.__all__), key=kind)
    assert set(typedflow.__all__) == (public - modules) | {"reducers"}


def test_every_exported_name_resolves() -> None:
    for name in typedflow.__all__:
        assert getattr(typedflow, name) is not None, name


def test_import_does_not_load_duckdb_or_pytest() -> None:
    heavy = "{'duckdb', 'pytest', 'hypothesis'}"
    code = f"import sys, typedflow; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
