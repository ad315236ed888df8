"""What a projection is: a pure fold of events into keyed rows, plus the tables it owns.

A projection never opens a connection. The runner asks it which rows a batch of events will
touch (`keys`), loads those that exist, hands them to the pure `fold`, and writes back the rows
`fold` returns, together with the projection's checkpoint, in one transaction.

Rows are plain dicts keyed by their table's single-column primary key `key`; `Rows` maps a
table's short name (`"flow_runs"`) to `{key: row}`. A row `fold` returns replaces the stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import MetaData, Table

from ledgerflow.events import StoredEvent

__all__ = ["Projection", "Row", "Rows", "empty_rows"]

Row = dict[str, Any]
Rows = dict[str, dict[str, Row]]


class Projection(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int:
        """Bump when tables or fold change: a stored projection of another version is rebuilt."""
        ...

    @property
    def types(self) -> Sequence[str]:
        """Event type patterns the projection reads (`task-run.*`)."""
        ...

    @property
    def table_names(self) -> Sequence[str]: ...

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        """This projection's tables, each named `prefix + short name`."""
        ...

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        """Keys of the stored rows `fold` needs to see (by table short name), given the rows
        loaded so far: the runner asks again after loading until no new key comes up."""
        ...

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        """Pure: the rows changed by `events`, given the loaded `rows` (not mutated)."""
        ...


def empty_rows(names: Sequence[str]) -> Rows:
    return {name: {} for name in names}
