"""Folding a batch of events into a projection's tables: what the live fold and a rebuild share.

The projection says which stored rows its fold needs (`keys`, asked again after each load
until nothing new comes up), those are loaded, the pure `fold` runs, and the rows it returns
are written back, or, in a rebuild, kept in its `RowBuffer` to be written in bulk later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection, Table

from ledgerflow.events import StoredEvent
from ledgerflow.events.payloads import is_wellformed
from ledgerflow.projections.base import Projection, Rows
from ledgerflow.projections.bulk import RowBuffer, load_rows, upsert

__all__ = ["apply_events", "foldable"]

_log = logging.getLogger("ledgerflow.projections")

_KEY_ROUNDS = 4


def apply_events(
    conn: Connection,
    projection: Projection,
    tables: dict[str, Table],
    events: Sequence[StoredEvent],
    buffer: RowBuffer | None = None,
) -> None:
    """Fold `events` (well-formed: see `foldable`) into the projection's `tables` inside the
    caller's transaction or, given a rebuild's `buffer`, into the buffer (which writes later)."""
    if buffer is not None and buffer.complete:
        # Every row is in the buffer: the fold looks up what it needs there (it never mutates
        # the rows it is given), no key rounds needed.
        buffer.remember(projection.fold({name: buffer.rows.setdefault(name, {}) for name in tables}, events))
        return
    rows: Rows = {name: {} for name in tables}
    asked: dict[str, set[str]] = {name: set() for name in tables}
    for _ in range(_KEY_ROUNDS):
        wanted = projection.keys(events, rows)
        fresh = {name: keys - asked[name] for name, keys in wanted.items() if keys - asked[name]}
        if not fresh:
            break
        for name, keys in fresh.items():
            asked[name] |= keys
            if buffer is not None:
                known = buffer.rows.get(name, {})
                rows[name].update((key, known[key]) for key in keys if key in known)
                keys = {key for key in keys if key not in known}
            load_rows(conn, tables[name], keys, rows[name])
    changes = projection.fold(rows, events)
    if buffer is not None:
        buffer.remember(changes)
        return
    for name, changed in changes.items():
        if changed:
            upsert(conn, tables[name], list(changed.values()))


def foldable(events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
    """The events a projection can fold: a malformed one is skipped with a warning, not fatal."""
    if all(is_wellformed(event) for event in events):
        return events
    kept = []
    for event in events:
        if is_wellformed(event):
            kept.append(event)
        else:
            _log.warning(
                "skipping malformed %s at %s in %s: required fields missing", event.type, event.cursor, event.stream
            )
    return kept
