"""The production event store on PostgreSQL (psycopg 3).

Why the feed is ordered by `(tx_id, position)` and read below a transaction-id horizon:

Positions come from an identity sequence, which hands out numbers at INSERT time, while
transactions commit in any order. A reader that polls `position > last` can see position 12
commit before position 11 and move its cursor past 11 for good: with 8 writers a naive reader
missed 5-15% of events here. Serialising appends with a table or advisory lock fixes that but
also serialises every commit and fsync (0.3-0.5x the throughput). Instead every row records
the id of the transaction that wrote it (`pg_current_xact_id()`), the feed is ordered by
`(tx_id, position)`, and a reader only sees rows whose `tx_id` is below the oldest transaction
still running (`pg_snapshot_xmin(pg_current_snapshot())`), evaluated in the same statement so
that the horizon and row visibility come from one snapshot. Every transaction below the
horizon has finished, so nothing can later appear behind a cursor. The cost: a long-running
write transaction anywhere in the cluster delays the feed (it never skips).

Per-stream order needs one more rule: xids are assigned at a transaction's first write, so
the stream-head update (the optimistic-concurrency check) must be the first write of every
append. Then a transaction that appends version 2 of a stream got its xid after the one that
wrote version 1, and the feed can never show 2 before 1.

A single-stream append (the common case) is one autocommit statement: a CTE updates (or
creates) the stream head and the INSERT of the events only produces rows if it did, so the
head update is still the first write, and a stale head writes nothing at all. Appends across
several streams run in a transaction: all head writes, then the events.

Parameters travel in binary (`%b`): psycopg then sends a batch's columns as arrays without
quoting and escaping every element in Python, which made a batch of 100 about 1.5x as fast.

NOTIFY serialises every notifying commit on a cluster-wide lock, so it is never sent inside an
append transaction: a background thread sends it after commit, at most once per few
milliseconds, from its own connection. It is only a wake-up; subscribers also poll.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout
from sqlalchemy import ColumnElement, create_engine, literal, literal_column, tuple_
from sqlalchemy.engine import make_url

from ledgerflow.events.appending import DuplicateEvent, Planned, PlannedRow, StaleHead, chain, stored_event
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import StoreUnavailable
from ledgerflow.events.integrity import Head
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.sql import SqlEventStore
from ledgerflow.events.tables import events

__all__ = ["PostgresEventStore"]

CHANNEL = "ledgerflow_events"
_NOTIFY_SPACING = 0.005
_HORIZON: ColumnElement[int] = literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
_INSERT_CHUNK = 1000
_EVENT_COLUMNS = "id, stream, stream_position, type, occurred, data, meta, hash"
_ROW = "(%b::int, %b::uuid, %b::text, %b::bigint, %b::text, %b::timestamptz, %b::text, %b::text, %b::bytea)"
_FETCH_HEADS = "SELECT s.stream, s.version, s.head_hash FROM unnest(%b::text[]) AS n(stream) JOIN streams s ON s.stream = n.stream"
_CREATE_ONE = (
    "INSERT INTO streams (stream, version, head_hash) VALUES (%b::text, %b::bigint, %b::bytea) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
_MOVE_ONE = (
    "UPDATE streams SET version = %b::bigint, head_hash = %b::bytea "
    "WHERE stream = %b::text AND version = %b::bigint RETURNING 1"
)
_CREATE_MANY = (
    "INSERT INTO streams (stream, version, head_hash) "
    "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bytea[]) ORDER BY 1 "
    "ON CONFLICT DO NOTHING RETURNING stream"
)
_MOVE_MANY = (
    "UPDATE streams s SET version = v.new, head_hash = v.hash "
    "FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bytea[]) AS v(stream, old, new, hash) "
    "WHERE s.stream = v.stream AND s.version = v.old RETURNING s.stream"
)


_UNNEST = (
    "unnest(%b::int[], %b::uuid[], %b::text[], %b::bigint[], %b::text[], %b::timestamptz[], "
    "%b::text[], %b::text[], %b::bytea[])"
)


@lru_cache(maxsize=4)
def _insert_sql(many: bool, gated: bool) -> str:
    """INSERT of events in the order given; `gated`: only if the CTE `head` wrote.

    Several events go in as arrays through unnest, so the statement text is the same whatever
    their number and psycopg's prepared-statement cache keeps it (a VALUES list of N rows is a
    new text each time, re-parsed on every append).
    """
    source = _UNNEST if many else f"(VALUES {_ROW})"
    where = " WHERE EXISTS (SELECT 1 FROM head)" if gated else ""
    # ORDER BY ord: identity positions must follow stream positions within the batch.
    order = " ORDER BY ord" if many else ""
    return (
        f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM {source} "
        f"AS v(ord, {_EVENT_COLUMNS}){where}{order} RETURNING id, position, tx_id, recorded"
    )


def _values(n: int, row: PlannedRow) -> tuple[Any, ...]:
    event = row.encoded.event
    return (n, event.id, row.stream, row.stream_position, event.type, event.occurred,
            row.encoded.data, row.encoded.meta, row.hash)


def _insert(rows: list[PlannedRow], gated: bool) -> tuple[str, list[Any]]:
    if len(rows) == 1:
        return _insert_sql(False, gated), list(_values(0, rows[0]))
    return _insert_sql(True, gated), [list(column) for column in zip(*map(_values, range(len(rows)), rows), strict=True)]


class PostgresEventStore(SqlEventStore):
    poll_interval = 0.5

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        parsed = make_url(url)
        engine = create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=pool_size,
            max_overflow=pool_size * 2,
        )
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        # Appends use psycopg directly, on autocommit connections of their own (see _write).
        args, kwargs = self._connect_args
        self._writers = ConnectionPool(
            conninfo=args[0] if args else "",
            kwargs={**{k: v for k, v in kwargs.items() if k != "context"}, "autocommit": True},
            min_size=1,
            max_size=pool_size,
            timeout=30,
            open=False,  # opened once the schema check below reached the server: no retry noise before
            name="ledgerflow-writers",
        )
        self._announce_pending = threading.Event()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._listening = False
        self._notifying = False
        try:
            super().__init__(engine)
            self._writers.open()
        except BaseException:
            self._writers.close()  # it would keep retrying its connections in the background
            engine.dispose()
            raise

    def _after(self, cursor: Cursor) -> ColumnElement[bool]:
        return tuple_(events.c.tx_id, events.c.position) > tuple_(
            literal(cursor.tx_id), literal(cursor.position)
        )

    def _visible(self) -> ColumnElement[bool]:
        return events.c.tx_id < _HORIZON

    # -- appending ------------------------------------------------------------------------

    def _write(self, plan: list[Planned]) -> tuple[list[StoredEvent], dict[str, Head]]:
        try:
            with self._writers.connection() as conn:
                if len(plan) == 1 and 0 < len(plan[0].events) <= _INSERT_CHUNK:
                    return self._write_one_statement(conn, plan)
                with conn.transaction():
                    return self._write_transaction(conn, plan)
        except pg_errors.UniqueViolation as exc:
            raise DuplicateEvent from exc
        except (pg_errors.DeadlockDetected, pg_errors.LockNotAvailable) as exc:
            raise StaleHead from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"the PostgreSQL event store cannot be reached: {exc}") from exc

    def _fetch_heads(self, cur: psycopg.Cursor[Any]) -> Any:
        def fetch(names: list[str]) -> dict[str, Head]:
            cur.execute(_FETCH_HEADS, (names,))
            return {stream: Head(version, bytes(h)) for stream, version, h in cur.fetchall()}

        return fetch

    def _write_one_statement(
        self, conn: psycopg.Connection[Any], plan: list[Planned]
    ) -> tuple[list[StoredEvent], dict[str, Head]]:
        part = plan[0]
        with conn.cursor() as cur:
            heads = self.heads.resolve(plan, self._fetch_heads(cur))
            rows, new_heads = chain(plan, heads)
            old, new = heads[part.stream], new_heads[part.stream]
            if old is None:
                head_sql, head_params = _CREATE_ONE, [part.stream, new.version, new.hash]
            else:
                head_sql, head_params = _MOVE_ONE, [new.version, new.hash, part.stream, old.version]
            insert_sql, insert_params = _insert(rows, gated=True)
            cur.execute(f"WITH head AS ({head_sql}) {insert_sql}", head_params + insert_params)
            returned = cur.fetchall()
        if not returned:
            self.heads.forget([part.stream])
            raise StaleHead
        return self._stored_rows(rows, returned), new_heads

    def _write_transaction(
        self, conn: psycopg.Connection[Any], plan: list[Planned]
    ) -> tuple[list[StoredEvent], dict[str, Head]]:
        with conn.cursor() as cur:
            heads = self.heads.resolve(plan, self._fetch_heads(cur))
            rows, new_heads = chain(plan, heads)
            created = sorted((s, h) for s, h in new_heads.items() if heads[s] is None)
            moved = sorted((s, old, h) for s, h in new_heads.items() if (old := heads[s]) is not None)
            if created:
                cur.execute(
                    _CREATE_MANY,
                    ([s for s, _ in created], [h.version for _, h in created], [h.hash for _, h in created]),
                )
                if len(cur.fetchall()) != len(created):
                    raise StaleHead
            if moved:
                cur.execute(
                    _MOVE_MANY,
                    (
                        [s for s, _, _ in moved],
                        [old.version for _, old, _ in moved],
                        [h.version for _, _, h in moved],
                        [h.hash for _, _, h in moved],
                    ),
                )
                if len(cur.fetchall()) != len(moved):
                    self.heads.forget(s for s, _, _ in moved)
                    raise StaleHead
            returned = []
            for start in range(0, len(rows), _INSERT_CHUNK):
                chunk = rows[start : start + _INSERT_CHUNK]
                cur.execute(*_insert(chunk, gated=False))
                returned += cur.fetchall()
        return self._stored_rows(rows, returned), new_heads

    def _stored_rows(self, rows: list[PlannedRow], returned: list[Any]) -> list[StoredEvent]:
        by_id = {
            event_id: (position, tx_id, recorded.astimezone(UTC))
            for event_id, position, tx_id, recorded in returned
        }
        return [stored_event(row, *by_id[row.encoded.event.id]) for row in rows]

    # -- cross-process wake-ups -----------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        args, kwargs = self._connect_args
        return psycopg.connect(*args, **{**kwargs, "autocommit": True})

    def _announce(self) -> None:
        if not self._notifying:
            self._notifying = self._start(self._send_notifications, "ledgerflow-notify")
        self._announce_pending.set()

    def _listen(self) -> None:
        if not self._listening:
            self._listening = self._start(self._receive_notifications, "ledgerflow-listen")

    def _start(self, target: Any, name: str) -> bool:
        with self._threads_lock:
            if not any(t.name == name for t in self._threads):
                thread = threading.Thread(target=target, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
        return True

    def _send_notifications(self) -> None:
        # A pooled writer connection, not one of its own: a process that appends then holds
        # one connection fewer, which matters when a runner forks a hundred of them.
        while not self.closed:
            if not self._announce_pending.wait(timeout=0.5):
                continue
            self._announce_pending.clear()
            try:
                with self._writers.connection() as conn:
                    conn.execute(f"NOTIFY {CHANNEL}")
            except (psycopg.Error, PoolTimeout):
                time.sleep(0.5)  # subscribers elsewhere fall back to polling meanwhile
            time.sleep(_NOTIFY_SPACING)

    def _receive_notifications(self) -> None:
        while not self.closed:
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.signal.notify()  # anything appended while we were not listening
                    while not self.closed:
                        for _ in conn.notifies(timeout=0.5):
                            self.signal.notify()
            except psycopg.Error:
                time.sleep(0.5)

    def close(self) -> None:
        super().close()
        self._writers.close()
        self._announce_pending.set()
        for thread in self._threads:
            thread.join(timeout=2)
