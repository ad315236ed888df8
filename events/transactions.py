"""Write transactions on the store's database: the one place that says "this transaction writes".

SQLite must know at BEGIN whether a transaction will write: a deferred transaction that reads
and then writes cannot wait for the write lock (it fails with SQLITE_BUSY whatever the busy
timeout), so a writing transaction starts with `BEGIN IMMEDIATE`. A connection made here
carries that signal; the SQLite store's begin hook reads it with `begins_write`. PostgreSQL
needs no signal, and the helpers work the same there.

Everything of ours that writes to the database outside the append path (migrations, consumer
checkpoints, projections, API keys) goes through `write_connection` or `write_transaction`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

if TYPE_CHECKING:
    from ledgerflow.events.store import EventStore

__all__ = ["begins_write", "engine_of", "write_connection", "write_transaction"]

_WRITE = "ledgerflow_write"


def write_connection(engine: Engine) -> Connection:
    """A new connection whose transactions write (`BEGIN IMMEDIATE` on SQLite).

    The caller begins, commits and closes it: `with write_connection(e) as c, c.begin(): ...`."""
    return engine.connect().execution_options(**{_WRITE: True})


def begins_write(conn: Connection) -> bool:
    """Whether a transaction beginning on `conn` will write."""
    return bool(conn.get_execution_options().get(_WRITE, False))


class write_transaction:  # noqa: N801 - used like a function: `with write_transaction(engine) as conn`
    """A write transaction on a connection of its own: committed when the block ends, rolled
    back when it raises (or when the block already rolled back). A plain class, not a
    generator: it sits on the hot path of every projection batch."""

    __slots__ = ("_engine", "_conn", "_tx")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> Connection:
        self._conn = write_connection(self._engine)
        try:
            self._tx = self._conn.begin()
        except BaseException:
            self._conn.close()
            raise
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if self._tx.is_active:
                if kind is None:
                    self._tx.commit()
                else:
                    self._tx.rollback()
        finally:
            self._conn.close()


def engine_of(store: EventStore) -> Engine:
    """The SQLAlchemy engine of a SQL store: consumers' checkpoints, projections and API keys
    live in the log's database, under the same connection settings."""
    engine = getattr(store, "engine", None)
    if not isinstance(engine, Engine):
        raise TypeError(f"{type(store).__name__} is not a SQL event store: it has no database engine")
    return engine
