"""The read side of the SQL stores: the queries over the events table, and decoding rows.

The global order is `(tx_id, position)`. Where a reader's view of it ends is the dialect's
business (`after` and `visible`, see events/postgres.py for why PostgreSQL needs a horizon);
the queries here are the same on both. Every function takes the caller's connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, Unpack
from uuid import UUID

from sqlalchemy import ColumnElement, Connection, Row, and_, false, or_, select, true

from ledgerflow.events.codec import decode
from ledgerflow.events.cursor import START, Cursor
from ledgerflow.events.errors import CorruptEvent
from ledgerflow.events.gcpause import cycle_collection_paused
from ledgerflow.events.model import NO_META, EventMeta, StoredEvent, trusted
from ledgerflow.events.tables import events
from ledgerflow.events.typefilter import TypePatterns

__all__ = ["COLUMNS", "LogReader", "Page", "decode_row", "read_by_ids", "read_stream"]

COLUMNS = (
    events.c.position,
    events.c.tx_id,
    events.c.id,
    events.c.stream,
    events.c.stream_position,
    events.c.type,
    events.c.occurred,
    events.c.recorded,
    events.c.data,
    events.c.meta,
    events.c.hash,
)


class Page(NamedTuple):
    """Events read in global order, and where to read on."""

    events: list[StoredEvent]
    next_after: str
    """The last event returned or, past it, the last one a type filter skipped: a filtered
    reader that moves its cursor here never scans the skipped events again."""


@lru_cache(maxsize=4096)
def _meta(text: str) -> EventMeta:
    """An event's meta from its stored JSON. The events of one run share theirs (the same root
    flow run): validating it once per distinct text instead of once per event matters when a
    replay or a rebuild reads thousands of events."""
    values = decode(text)
    return EventMeta(**values) if values else NO_META


def decode_row(row: Row[Any, Unpack[tuple[Any, ...]]]) -> StoredEvent:
    """The stored event of an events-table row read with `COLUMNS`."""
    # Unpacked by position: a Row's attribute lookups cost ~1 us each, eleven per event.
    position, tx_id, id_, stream, stream_position, type_, occurred, recorded, data, meta, hash_ = row
    try:
        return trusted(
            StoredEvent,
            {
                "id": id_,
                "type": type_,
                "stream": stream,
                "occurred": occurred,
                "data": decode(data),
                "meta": _meta(meta),
                "position": position,
                "stream_position": stream_position,
                "recorded": recorded,
                "hash": hash_.hex(),
                "cursor": f"{tx_id}.{position}",
            },
        )
    except (ValueError, TypeError) as exc:
        raise CorruptEvent(f"event at position {position} cannot be decoded: {exc}") from exc


def _type_condition(patterns: TypePatterns) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if patterns.exact:
        clauses.append(events.c.type.in_(sorted(patterns.exact)))
    clauses.extend(events.c.type.like(like, escape="\\") for like in patterns.likes)
    return or_(*clauses) if clauses else false()


class LogReader:
    """The log's queries for one dialect: `after(cursor)` says what lies past a cursor,
    `visible` what a feed reader may see (None: every committed row)."""

    def __init__(
        self, after: Callable[[Cursor], ColumnElement[bool]], visible: ColumnElement[bool] | None
    ) -> None:
        self._after = after
        self._visible = visible

    def read_after(
        self, conn: Connection, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> list[StoredEvent]:
        """Up to `limit` visible events past `cursor` in global order, of matching types."""
        conditions = [self._after(cursor)]
        if self._visible is not None:
            conditions.append(self._visible)
        if patterns:
            conditions.append(_type_condition(patterns))
        query = (
            select(*COLUMNS)
            .where(and_(*conditions))
            .order_by(events.c.tx_id, events.c.position)
            .limit(limit)
        )
        rows = conn.execute(query).all()
        with cycle_collection_paused():
            return [decode_row(row) for row in rows]

    def read_page(
        self, conn: Connection, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> tuple[list[StoredEvent], Cursor]:
        """`read_after`, and the cursor to read on from (see `Page.next_after`)."""
        # The head is read first: everything up to it is committed and visible to the read
        # that follows, so when fewer than `limit` events match, every event up to the head
        # was either returned or is of another type.
        head = self.head(conn) if patterns else None
        batch = self.read_after(conn, cursor, limit, patterns)
        last = Cursor.parse(batch[-1].cursor) if batch else cursor
        if head is not None and len(batch) < limit and head > last:
            return batch, head
        return batch, last

    def read_last(self, conn: Connection, limit: int, patterns: TypePatterns) -> list[StoredEvent]:
        """The newest `limit` visible events of matching types, oldest first."""
        conditions = []
        if self._visible is not None:
            conditions.append(self._visible)
        if patterns:
            conditions.append(_type_condition(patterns))
        query = (
            select(*COLUMNS)
            .where(and_(true(), *conditions))
            .order_by(events.c.tx_id.desc(), events.c.position.desc())
            .limit(limit)
        )
        return [decode_row(row) for row in reversed(conn.execute(query).all())]

    def head(self, conn: Connection) -> Cursor:
        """The cursor of the newest visible event (START on an empty log)."""
        query = select(events.c.tx_id, events.c.position)
        if self._visible is not None:
            query = query.where(self._visible)
        query = query.order_by(events.c.tx_id.desc(), events.c.position.desc()).limit(1)
        row = conn.execute(query).first()
        return Cursor(row.tx_id, row.position) if row else START


def read_stream(
    conn: Connection, stream: str, from_version: int, limit: int | None, patterns: TypePatterns | None = None
) -> list[StoredEvent]:
    """The stream's events from `from_version` (1 = the first) on, in stream order; only those
    of matching types when `patterns` is given."""
    query = (
        select(*COLUMNS)
        .where(events.c.stream == stream, events.c.stream_position >= from_version)
        .order_by(events.c.stream_position)
    )
    if patterns:
        query = query.where(_type_condition(patterns))
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    with cycle_collection_paused():
        return [decode_row(row) for row in rows]


def read_by_ids(conn: Connection, ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
    """The stored events among `ids`, by id."""
    found: dict[UUID, StoredEvent] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(select(*COLUMNS).where(events.c.id.in_(chunk))):
            found[row.id] = decode_row(row)
    return found
