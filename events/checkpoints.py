"""Durable checkpoints: how far a named consumer has handled the log.

One row per consumer in `consumer_checkpoints`: its name and the cursor it has handled up to.
A checkpoint only moves forward, and only by compare-and-swap: `advance` sets the new cursor
`WHERE name = ? AND cursor = <the one the mover read>`, so of two processes that handled the
same batch, one moves it and the other learns that it lost (and reads where it stands now).
On PostgreSQL the UPDATE also locks the row until commit: a second mover waits, then finds the
cursor changed and updates nothing. SQLite write transactions run one at a time anyway.

The functions take the caller's connection, so a consumer can move its checkpoint inside the
transaction that writes the batch's effects (see events/consumer.py).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, text

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.model import utcnow
from ledgerflow.events.tables import UtcDateTime, consumer_checkpoints

__all__ = ["advance", "create", "read", "read_all"]

_CREATE = text(
    "INSERT INTO consumer_checkpoints (name, cursor, updated) VALUES (:name, :cursor, :updated) "
    "ON CONFLICT (name) DO NOTHING"
).bindparams(bindparam("updated", type_=UtcDateTime()))


def read(conn: Connection, name: str) -> Cursor | None:
    """The checkpoint of consumer `name`; None if it has none yet."""
    value = conn.execute(
        select(consumer_checkpoints.c.cursor).where(consumer_checkpoints.c.name == name)
    ).scalar_one_or_none()
    return None if value is None else Cursor.parse(value)


def read_all(conn: Connection) -> dict[str, Cursor]:
    """Every consumer's checkpoint, by name."""
    rows = conn.execute(select(consumer_checkpoints.c.name, consumer_checkpoints.c.cursor))
    return {name: Cursor.parse(cursor) for name, cursor in rows}


def create(conn: Connection, name: str, at: Cursor) -> Cursor:
    """Give consumer `name` a checkpoint at `at` unless it has one; return the one it has."""
    if not name or len(name) > 200:
        raise ValueError(f"a consumer's name must be 1-200 characters, not {name!r}")
    # ON CONFLICT DO NOTHING (the same words on SQLite and PostgreSQL): two processes creating
    # the same consumer at once both succeed, and the first one's position stands.
    conn.execute(_CREATE, {"name": name, "cursor": str(at), "updated": utcnow()})
    stored = read(conn, name)
    assert stored is not None
    return stored


def advance(conn: Connection, name: str, seen: Cursor, to: Cursor) -> bool:
    """Move consumer `name` from `seen` to `to` if it is still at `seen`: True if it moved.

    `to` must be past `seen`: a checkpoint never moves backwards."""
    if to <= seen:
        raise ValueError(f"checkpoint {name!r} may only move forward, not from {seen} to {to}")
    moved = conn.execute(
        consumer_checkpoints.update()
        .where(consumer_checkpoints.c.name == name, consumer_checkpoints.c.cursor == str(seen))
        .values(cursor=str(to), updated=utcnow())
    )
    return moved.rowcount == 1

