"""Small helpers the event store's tests share: building events and waiting for the feed."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, insert

from ledgerflow.events import Cursor, EventStore, NewEvent, StoredEvent
from ledgerflow.events.codec import GENESIS_HASH, chain_hash, encode
from ledgerflow.events.tables import events, streams

__all__ = ["caught_up", "ev", "insert_behind_the_store"]


def ev(kind: str = "t", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data))


def caught_up(store: EventStore, cursor: str, timeout: float = 30.0) -> None:
    """Wait until the feed shows everything up to `cursor`.

    On PostgreSQL the feed stops below the oldest transaction still running anywhere in the
    cluster (events/postgres.py), so another test's open transaction can hold back even our
    own committed appends for a moment. Waiting for the head is waiting on that condition.
    """
    deadline = time.monotonic() + timeout
    while Cursor.parse(store.head()) < Cursor.parse(cursor):
        assert time.monotonic() < deadline, f"the feed never reached {cursor} (head {store.head()})"
        time.sleep(0.005)


def all_visible(store: EventStore, count: int, timeout: float = 30.0) -> list[StoredEvent]:
    """The whole feed, once it shows `count` events (see `caught_up` for why one waits)."""
    deadline = time.monotonic() + timeout
    while len(found := list(store.iter_all())) < count:
        assert time.monotonic() < deadline, f"the feed shows {len(found)} of {count} events"
        time.sleep(0.005)
    return found


def insert_behind_the_store(conn: Connection, stream: str, new: Sequence[NewEvent]) -> None:
    """Write a new stream's events with plain SQL, hash-chained as the store would.

    For what the store's API cannot do: write into an older schema version, or hold an
    append's transaction open while others commit.
    """
    previous = GENESIS_HASH
    for version, event in enumerate(new, 1):
        encoded = encode(event)
        previous = chain_hash(
            previous,
            event_id=str(event.id),
            stream=stream,
            stream_position=version,
            type=event.type,
            occurred=event.occurred,
            data=encoded.data,
            meta=encoded.meta,
        )
        if version == 1:  # the head first, as every append writes it (events/postgres.py)
            conn.execute(insert(streams).values(stream=stream, version=len(new), head_hash=b"\0" * 32))
        conn.execute(
            insert(events).values(
                id=event.id,
                stream=stream,
                stream_position=version,
                type=event.type,
                occurred=event.occurred,
                recorded=event.occurred,
                data=encoded.data,
                meta=encoded.meta,
                hash=previous,
            )
        )
    conn.execute(streams.update().where(streams.c.stream == stream).values(head_hash=previous))
