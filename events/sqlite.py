"""The embedded event store on a SQLite file.

SQLite allows one writer at a time: appends take an in-process lock and `BEGIN IMMEDIATE`,
so the write lock is held from the first statement and a transaction never has to upgrade
from reader to writer (which fails with SQLITE_BUSY whatever the busy timeout). With a
single writer, positions are assigned in commit order, so a reader needs no horizon:
`position > cursor` never skips. `tx_id` stays 0 to keep one cursor shape across backends.

The append path talks to sqlite3 directly with fixed SQL: it is the hot path of every run,
and SQLAlchemy's statement handling cost more than SQLite's own work there.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from ledgerflow.events.appending import DuplicateEvent, Planned, StaleHead, chain, stored_event
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import StoreUnavailable
from ledgerflow.events.health import corruption_of
from ledgerflow.events.integrity import Head
from ledgerflow.events.model import StoredEvent, utcnow
from ledgerflow.events.sql import SqlEventStore
from ledgerflow.events.tables import events, to_micros
from ledgerflow.events.transactions import begins_write

__all__ = ["SqliteEventStore"]

_BUSY_TIMEOUT = 30
"""Seconds a connection waits for another process's write lock before giving up."""

_INSERT_EVENT = (
    "INSERT INTO events (position, tx_id, id, stream, stream_position, type, occurred, recorded,"
    " data, meta, hash) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_HEAD = "INSERT INTO streams (stream, version, head_hash) VALUES (?, ?, ?)"
_MOVE_HEAD = "UPDATE streams SET version = ?, head_hash = ? WHERE stream = ? AND version = ?"


def _ensure_folder(folder: Path, home: Path | None) -> None:
    if folder.is_dir():
        return
    if home is not None and folder.absolute() == home.expanduser().absolute():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return
    raise StoreUnavailable(
        f"the folder {str(folder)!r} of the SQLite database does not exist: create it, or fix LEDGERFLOW_DATABASE_URL"
    )


class SqliteEventStore(SqlEventStore):
    """Appends in this process wake subscribers at once; other processes' appends are polled."""

    poll_interval = 0.1

    def __init__(self, url: str, *, synchronous: str = "NORMAL", home: Path | None = None) -> None:
        """`home`: the one missing folder this may create for the file (LEDGERFLOW_HOME)."""
        parsed = make_url(url)
        try:
            if parsed.database and parsed.database != ":memory:":
                _ensure_folder(Path(parsed.database).expanduser().parent, home)
            engine = create_engine(
                parsed.set(drivername="sqlite"),
                connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT},
            )
            _configure(engine, synchronous)
            self._lock = threading.Lock()
            super().__init__(engine)
        except (OSError, DatabaseError) as exc:
            if (damage := corruption_of(exc)) is not None:
                raise damage from exc
            reason = getattr(exc, "orig", None) or exc
            raise StoreUnavailable(f"the SQLite event store at {parsed.database} cannot be used: {reason}") from exc

    def _write_lock(self) -> contextlib.AbstractContextManager[Any]:
        return self._lock

    def _after(self, cursor: Cursor) -> ColumnElement[bool]:
        return events.c.position > cursor.position

    def _write(self, plan: list[Planned]) -> tuple[list[StoredEvent], dict[str, Head]]:
        pooled = self.engine.raw_connection()
        try:
            cur = pooled.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute("BEGIN IMMEDIATE")
            try:
                result = self._write_in(cur, plan)
                cur.execute("COMMIT")
                return result
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            raise DuplicateEvent from exc
        except sqlite3.DatabaseError as exc:
            if (damage := corruption_of(exc)) is not None:
                raise damage from exc
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            raise StoreUnavailable(f"the SQLite event store cannot be written: {exc}") from exc
        finally:
            pooled.close()

    def _write_in(
        self, cur: sqlite3.Cursor, plan: list[Planned]
    ) -> tuple[list[StoredEvent], dict[str, Head]]:
        def fetch(names: list[str]) -> dict[str, Head]:
            marks = ",".join("?" * len(names))
            cur.execute(
                f"SELECT stream, version, head_hash FROM streams WHERE stream IN ({marks})", names
            )
            return {stream: Head(version, hash_) for stream, version, hash_ in cur.fetchall()}

        heads = self.heads.resolve(plan, fetch)
        rows, new_heads = chain(plan, heads)
        created = [(s, h.version, h.hash) for s, h in new_heads.items() if heads[s] is None]
        moved = [
            (h.version, h.hash, s, old.version)
            for s, h in new_heads.items()
            if (old := heads[s]) is not None
        ]
        if created:
            cur.executemany(_INSERT_HEAD, created)
        if moved:
            cur.executemany(_MOVE_HEAD, moved)
            if cur.rowcount != len(moved):
                self.heads.forget(s for _, _, s, _ in moved)
                raise StaleHead
        (last,) = cur.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        recorded = utcnow()
        recorded_micros = to_micros(recorded)
        cur.executemany(
            _INSERT_EVENT,
            [
                (
                    last + n,
                    row.encoded.event.id.hex,
                    row.stream,
                    row.stream_position,
                    row.encoded.event.type,
                    to_micros(row.encoded.event.occurred),
                    recorded_micros,
                    row.encoded.data,
                    row.encoded.meta,
                    row.hash,
                )
                for n, row in enumerate(rows, 1)
            ],
        )
        stored = [stored_event(row, last + n, 0, recorded) for n, row in enumerate(rows, 1)]
        return stored, new_heads


def _use_wal(cur: sqlite3.Cursor) -> None:
    # Turning a new file to WAL takes an exclusive lock that SQLite does not wait for (the busy
    # timeout does not apply): processes opening a new database at once must retry. Once the
    # file is in WAL mode, the pragma changes nothing and takes no lock.
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _configure(engine: Any, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from pysqlite so that we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        _use_wal(cur)
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA case_sensitive_like=ON")  # type patterns match as on PostgreSQL
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if begins_write(conn) else "BEGIN")
