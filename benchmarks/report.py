"""Figures, their targets, and the plain-text table and JSON file they are reported in."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs

Op: TypeAlias = Literal[">=", "<=", ">", "<"]
"""How a value is compared with its target's bound."""

Result: TypeAlias = Literal["PASS", "FAIL", "n.a."]
"""A figure's verdict:

- ``"PASS"``: the value meets its target;
- ``"FAIL"``: it does not;
- ``"n.a."``: the figure has no target, or no value (skipped; the note says why).
"""

_OPS: dict[Op, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


@attrs.frozen
class Target:
    """A bound a figure's value must meet, in the figure's unit."""

    op: Op
    """The comparison."""
    bound: float
    """The value compared with."""

    def met(self, value: float) -> bool:
        """Whether ``value`` meets this target."""
        return _OPS[self.op](value, self.bound)


@attrs.frozen(kw_only=True)
class Figure:
    """One measured (or skipped) figure: one row of the table."""

    key: str
    """A stable identifier, for the JSON file."""
    label: str
    """What was measured, for people."""
    value: float | None
    """The value in ``unit``; None when it was not measured."""
    unit: str
    """The unit of ``value`` and of the target's bound."""
    shown: str = ""
    """How the value is printed; ``value`` and ``unit`` when empty."""
    target: Target | None = None
    """What the value should meet, if anything."""
    note: str = ""
    """Why a figure was skipped, or what else to know about it."""

    @property
    def result(self) -> Result:
        """The figure's verdict."""
        if self.value is None or self.target is None:
            return "n.a."
        return "PASS" if self.target.met(self.value) else "FAIL"

    @property
    def value_text(self) -> str:
        """The value as printed in the table."""
        if self.value is None:
            return "-"
        return self.shown or f"{number(self.value)} {self.unit}"

    @property
    def target_text(self) -> str:
        """The target as printed in the table."""
        if self.target is None:
            return ""
        return f"{self.target.op} {number(self.target.bound)} {self.unit}"

    def as_json(self) -> dict[str, Any]:
        """The figure as a JSON object."""
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "target": None
            if self.target is None
            else {"op": self.target.op, "bound": self.target.bound},
            "result": self.result,
            "note": self.note,
        }


def number(value: float) -> str:
    """A value with about three significant digits and thousands separators."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def skipped(key: str, label: str, unit: str, why: str, target: Target | None = None) -> Figure:
    """A figure that was not measured, with the reason."""
    return Figure(key=key, label=label, value=None, unit=unit, target=target, note=why)


def table(figures: Sequence[Figure]) -> str:
    """The figures as a plain-text table: figure, value, target, result, note."""
    head = ("figure", "value", "target", "result", "note")
    rows = [(f.label, f.value_text, f.target_text, f.result, f.note) for f in figures]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def line(cells: tuple[str, str, str, str, str]) -> str:
        parts = [cells[0].ljust(widths[0]), cells[1].rjust(widths[1])]
        parts += [cells[2].ljust(widths[2]), cells[3].ljust(widths[3]), cells[4]]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths) + "  ----"
    return "\n".join([line(head), rule, *(line(r) for r in rows)])


def summary(figures: Sequence[Figure]) -> str:
    """How many figures passed, failed or had no verdict."""
    results = [f.result for f in figures]
    return (
        f"targets: {results.count('PASS')} PASS, {results.count('FAIL')} FAIL; "
        f"{results.count('n.a.')} figures without a verdict"
    )


def write_json(path: Path, meta: dict[str, Any], figures: Sequence[Figure]) -> None:
    """Write the run's description and its figures to ``path``."""
    data = {"meta": meta, "figures": [f.as_json() for f in figures]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
