"""The database under the log: is the file (or the PostgreSQL schema) itself sound?

The hash chains (events/integrity.py) prove that the events were not changed; they cannot
notice a damaged page of a projection table or an index, and a damaged page of the events
table stops the walk with a driver error. Here:

- `translate_corruption(engine)` makes every statement on the engine raise `CorruptStore`
  (one line, and what to do) instead of the driver's "database disk image is malformed";
- `storage_problems(conn)` lists what the database's own checks find: SQLite's
  `PRAGMA integrity_check`; on PostgreSQL, every table of the schema read in full, every
  index valid (and, when the amcheck extension is installed, its B-tree checked), and the
  immutability triggers present.
"""

from __future__ import annotations

import sqlite3
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import ExceptionContext

from ledgerflow.events.errors import CorruptStore

__all__ = ["corruption_of", "storage_problems", "translate_corruption"]

_SQLITE_DAMAGE = ("malformed", "not a database", "corrupt")
_PG_DAMAGE = ("XX001", "XX002")  # data_corrupted, index_corrupted
_TRIGGERS = {
    "sqlite": {"events_no_update", "events_no_delete"},
    "postgresql": {"events_immutable", "events_no_truncate"},
}
_MAX_LISTED = 20


def corruption_of(exc: BaseException) -> CorruptStore | None:
    """The CorruptStore that a driver error means, or None when it is not about damage."""
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.DatabaseError) and type(orig) in (sqlite3.DatabaseError, sqlite3.OperationalError):
        message = str(orig)
        if any(needle in message.lower() for needle in _SQLITE_DAMAGE):
            return CorruptStore(f"the SQLite database file is damaged ({message})")
    if getattr(orig, "sqlstate", None) in _PG_DAMAGE:
        first = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        return CorruptStore(f"the PostgreSQL database is damaged ({first})")
    return None


def translate_corruption(engine: Engine) -> None:
    """Raise CorruptStore, from the driver's error, wherever a statement on `engine` meets damage."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        found = corruption_of(context.original_exception)
        if found is not None:
            raise found from context.original_exception


def storage_problems(conn: Connection) -> list[str]:
    """What the database's own checks find wrong (empty when it is sound)."""
    try:
        if conn.dialect.name == "sqlite":
            problems = _sqlite_problems(conn)
        else:
            problems = _postgres_problems(conn)
        problems += _missing_triggers(conn)
    except CorruptStore as exc:
        return [str(exc)]
    return problems


def _sqlite_problems(conn: Connection) -> list[str]:
    rows = [str(row[0]) for row in conn.exec_driver_sql(f"PRAGMA integrity_check({_MAX_LISTED})")]
    return [] if rows == ["ok"] else rows


def _postgres_problems(conn: Connection) -> list[str]:
    problems: list[str] = []
    tables = conn.execute(text(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
        " AND c.relkind = 'r' ORDER BY 1"
    )).scalars().all()
    for table in tables:
        # Casting each row to text reads every column, out-of-line (TOAST) values included.
        problems += _try(conn, f"table {table}", f'SELECT count(*), sum(length(t::text)) FROM "{table}" t')
    invalid = conn.execute(text(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND NOT (i.indisvalid AND i.indisready)"
    )).scalars().all()
    problems += [f"index {name} is not valid (a failed CREATE INDEX or REINDEX): REINDEX it" for name in invalid]
    if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'")).first():
        indexes = conn.execute(text(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid"
            " AND c.relnamespace = current_schema()::regnamespace ORDER BY 1"
        )).scalars().all()
        for index in indexes:
            problems += _try(conn, f"index {index}", f"SELECT bt_index_check('\"{index}\"'::regclass)")
    return problems[:_MAX_LISTED]


def _try(conn: Connection, what: str, statement: str) -> list[str]:
    """Run a read in a savepoint: one that fails is a problem, and the check goes on."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(statement).all()
    except CorruptStore as exc:
        return [f"{what}: {exc}"]
    except Exception as exc:  # any error reading what the store wrote is damage to report
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return [f"{what} cannot be read: {first}"]
    return []


def _missing_triggers(conn: Connection) -> list[str]:
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
    else:
        query = (
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE c.relname = 'events' AND c.relnamespace = current_schema()::regnamespace"
            " AND t.tgenabled <> 'D'"
        )
    present = set(conn.exec_driver_sql(query).scalars().all())
    missing = sorted(_TRIGGERS.get(conn.dialect.name, set()) - present)
    return [f"trigger {name} that keeps events immutable is missing or disabled" for name in missing]
