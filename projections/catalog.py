"""Where projections keep their checkpoints, and the names of their tables.

`projection_checkpoints` has one row per projection: the generation of its live tables, the
version of the code that built them and the log cursor they reflect; while a rebuild runs,
also the generation being built aside and how far it got. (The live fold reads the log as a
durable consumer with a checkpoint of its own, see projections/live.py; a projection's
`cursor` says how far its tables reflect the log, which after a rebuild may be further.) A projection's tables for
generation G are named `p_<name>_g<G>_<table>`, so a rebuild builds the next generation next
to the live one and a swap is one UPDATE of `generation` (plus dropping the old tables).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, text
from sqlalchemy.schema import CreateTable

from ledgerflow.events import Cursor
from ledgerflow.events.migrations import Migration
from ledgerflow.projections.base import Projection

__all__ = [
    "MIGRATIONS",
    "Checkpoint",
    "checkpoint_of",
    "checkpoints",
    "create_tables",
    "guard_tables",
    "tables_for",
]

_metadata = MetaData()

checkpoints = Table(
    "projection_checkpoints",
    _metadata,
    Column("name", String(100), primary_key=True),
    Column("generation", Integer(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("cursor", Text(), nullable=False),
    Column("building_generation", Integer()),
    Column("building_cursor", Text()),
)


class Checkpoint(NamedTuple):
    name: str
    generation: int
    version: int
    cursor: Cursor
    building_generation: int | None
    building_cursor: Cursor | None


def checkpoint_of(row: Any) -> Checkpoint:
    """A `projection_checkpoints` row as a Checkpoint."""
    return Checkpoint(
        row.name,
        row.generation,
        row.version,
        Cursor.parse(row.cursor),
        row.building_generation,
        Cursor.parse(row.building_cursor) if row.building_cursor else None,
    )


def _create_checkpoints(conn: Connection) -> None:
    checkpoints.create(conn)


MIGRATIONS = (Migration(1, "projection checkpoints", _create_checkpoints),)


_defined: dict[tuple[int, int], tuple[Projection, dict[str, Table]]] = {}


def tables_for(projection: Projection, generation: int) -> dict[str, Table]:
    """The projection's tables of `generation`, by short name (defined once per process)."""
    known = _defined.get((id(projection), generation))
    if known is None or known[0] is not projection:
        tables = projection.define_tables(MetaData(), f"p_{projection.name}_g{generation}_")
        known = _defined[(id(projection), generation)] = (projection, tables)
    return known[1]


def create_tables(conn: Connection, projection: Projection, generation: int, *, indexes: bool = True) -> None:
    """(Re)create the projection's tables of `generation`, empty; with `indexes`, indexed."""
    for table in tables_for(projection, generation).values():
        table.drop(conn, checkfirst=True)
        conn.execute(CreateTable(table))
        if indexes:
            for index in table.indexes:
                index.create(conn)


def guard_tables(conn: Connection, name: str, *, swap: bool) -> None:
    """Hold projection `name`'s tables for this transaction: shared by readers, exclusive by a
    rebuild's swap, so a query never reads a generation that is dropped under it.

    On PostgreSQL an advisory lock (a row lock would give every query a transaction id and
    hold back the event feed's horizon). SQLite needs none: a reader's snapshot keeps the
    tables it started with even after a writer drops them."""
    if conn.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if swap else "pg_advisory_xact_lock_shared"
        conn.execute(text(f"SELECT {function}(hashtext(:key))"), {"key": f"ledgerflow-projection-{name}"})
