"""Every backend runs the one contract suite of ``typedflow.testing``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typedflow import HistoryCheckpointer, InMemoryCheckpointer
from typedflow.checkpoint.duckdb import DuckDBCheckpointer
from typedflow.testing import CheckpointerContract, ContractState

if TYPE_CHECKING:
    from pathlib import Path


class TestInMemory(CheckpointerContract):
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        return InMemoryCheckpointer(schema)


class TestDuckDBFile(CheckpointerContract):
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        return DuckDBCheckpointer(schema, tmp_path / "contract.duckdb")

    def reopen(
        self,
        checkpointer: HistoryCheckpointer[ContractState],
        schema: type[ContractState],
        tmp_path: Path,
    ) -> HistoryCheckpointer[ContractState]:
        checkpointer.close()
        return DuckDBCheckpointer(schema, tmp_path / "contract.duckdb")


class TestDuckDBMemory(CheckpointerContract):
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        return DuckDBCheckpointer(schema, ":memory:", snapshot_every=3)


class TestDuckDBBatched(CheckpointerContract):
    def make_checkpointer(
        self, schema: type[ContractState], tmp_path: Path
    ) -> HistoryCheckpointer[ContractState]:
        return DuckDBCheckpointer(
            schema, tmp_path / "batched.duckdb", durability="batch", batch_size=4
        )

    def reopen(
        self,
        checkpointer: HistoryCheckpointer[ContractState],
        schema: type[ContractState],
        tmp_path: Path,
    ) -> HistoryCheckpointer[ContractState]:
        checkpointer.close()
        return DuckDBCheckpointer(
            schema, tmp_path / "batched.duckdb", durability="batch", batch_size=4
        )
