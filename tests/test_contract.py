"""Every backend runs the one contract suite of ``typedflow.testing``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typedflow import HistoryCheckpointer, InMemoryCheckpointer
from typedflow.testing import CheckpointerContract, ContractState

if TYPE_CHECKING:
    from pathlib import Path


class TestInMemory(CheckpointerContract):
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        return InMemoryCheckpointer(schema)
