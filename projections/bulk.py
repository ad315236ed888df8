"""Moving projection rows in and out of the database in bulk.

Upserts by key (one statement per table and batch: arrays through `unnest` on PostgreSQL,
`executemany` on SQLite), binary COPY for rows that are all new, loading rows by key, and
`RowBuffer`, the in-memory rows of a rebuild. These are the hot paths of every rebuild and of
the live fold, so they bypass SQLAlchemy's per-row statement handling; the columns' bind
processors still convert each value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Table, select

from ledgerflow.projections.base import Rows

__all__ = ["RowBuffer", "copy_rows", "create_indexes", "load_rows", "upsert"]

_LOAD_CHUNK = 1000


class _UpsertPlan(NamedTuple):
    sql: str
    columns: Sequence[tuple[str, Callable[[Any], Any] | None]]
    arrays: bool


@lru_cache(maxsize=512)
def _upsert_plan(table: Table, dialect: Dialect) -> _UpsertPlan:
    quote = dialect.identifier_preparer.quote
    names = [column.name for column in table.c]
    columns = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in table.c]
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != "key")
    target = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
    conflict = f" ON CONFLICT ({quote('key')}) DO UPDATE SET {updates}"
    if dialect.name == "postgresql":
        # One statement whatever the row count: each column travels as one array.
        arrays = ", ".join(f"%b::{c.type.compile(dialect)}[]" for c in table.c)
        return _UpsertPlan(f"{target}SELECT * FROM unnest({arrays}){conflict}", columns, True)
    marks = ", ".join("?" for _ in names)
    return _UpsertPlan(f"{target}VALUES ({marks}){conflict}", columns, False)


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert or replace `rows` by key."""
    plan = _upsert_plan(table, conn.dialect)
    if plan.arrays:
        arrays = [
            [convert(row[name]) for row in rows] if convert else [row[name] for row in rows]
            for name, convert in plan.columns
        ]
        # Binary parameters (%b): psycopg's text dump of big arrays, escaping every item,
        # costs more than the database's own work here.
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(plan.sql, arrays)
        return
    conn.exec_driver_sql(plan.sql, list(_values(plan, rows)))


def _values(plan: _UpsertPlan, rows: list[dict[str, Any]]) -> Iterable[tuple[Any, ...]]:
    """Each row's values in column order, bind processors applied: column by column, so the
    per-value work is C loops except for the processors themselves."""
    names = [name for name, _ in plan.columns]
    values = map(itemgetter(*names), rows) if len(names) > 1 else ((row[names[0]],) for row in rows)
    converters = [(n, convert) for n, (_, convert) in enumerate(plan.columns) if convert]
    if not converters or not rows:
        return values
    columns = list(zip(*values, strict=True))
    for n, convert in converters:
        columns[n] = tuple(map(convert, columns[n]))
    return zip(*columns, strict=True)


def copy_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Write rows that are all new with binary COPY (PostgreSQL only)."""
    plan = _upsert_plan(table, conn.dialect)
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name, _ in plan.columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        # Binary COPY with the columns' types given up front: half the client's time of text.
        types = cur.execute(
            "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            [quote(table.name)],
        ).fetchall()
        with cur.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([oid for (oid,) in types])
            for values in _values(plan, rows):
                copy.write_row(values)


def load_rows(conn: Connection, table: Table, keys: Iterable[str], into: dict[str, Any]) -> None:
    """Read the stored rows of `keys` into `into` (by key); missing keys are left out."""
    keys = list(keys)
    for start in range(0, len(keys), _LOAD_CHUNK):
        chunk = keys[start : start + _LOAD_CHUNK]
        for row in conn.execute(select(table).where(table.c.key.in_(chunk))).mappings():
            into[row["key"]] = dict(row)


def create_indexes(conn: Connection, table: Table) -> None:
    for index in table.indexes:
        index.create(conn)


class RowBuffer:
    """A rebuild's rows, kept in memory and written in bulk: the tables being built are
    private to the rebuild, so it never needs to read them back while everything fits."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.dirty: dict[str, set[str]] = {}
        self.size = 0
        self.complete = True
        """True while every row of the tables is here (nothing flushed and dropped yet)."""
        self.written = False
        """Whether any row went to the tables yet (before that, every row is a new one)."""

    def remember(self, changes: Rows) -> None:
        for name, changed in changes.items():
            table = self.rows.setdefault(name, {})
            self.size -= len(table)
            table.update(changed)
            self.size += len(table)
            self.dirty.setdefault(name, set()).update(changed)

    def flush(self, conn: Connection, tables: dict[str, Table], *, drop: bool = False) -> None:
        """Write the changed rows (COPY on PostgreSQL while every row is new); with `drop`,
        forget every row afterwards to bound memory."""
        for name, keys in self.dirty.items():
            if keys:
                rows = [self.rows[name][key] for key in keys]
                if not self.written and conn.dialect.name == "postgresql":
                    copy_rows(conn, tables[name], rows)
                else:
                    upsert(conn, tables[name], rows)
        self.dirty.clear()
        self.written = True
        if drop:
            self.rows.clear()
            self.size = 0
            self.complete = False
