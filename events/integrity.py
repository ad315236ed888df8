"""Tamper evidence: walking each stream's hash chain and comparing it with its head record.

`walk_chains` is pure: it takes rows ordered by (stream, stream_position) and the stream
heads, and names the first broken link. `verify_log` feeds it from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from sqlalchemy import Connection, select

from ledgerflow.events.codec import GENESIS_HASH, chain_hash
from ledgerflow.events.tables import events, streams

__all__ = ["Break", "ChainRow", "Head", "VerifyReport", "verify_log", "walk_chains"]


class Head(NamedTuple):
    version: int
    hash: bytes


class ChainRow(Protocol):
    """An events-table row as the chain walk reads it; read-only, so SQLAlchemy rows fit."""

    @property
    def id(self) -> UUID: ...

    @property
    def stream(self) -> str: ...

    @property
    def stream_position(self) -> int: ...

    @property
    def type(self) -> str: ...

    @property
    def occurred(self) -> datetime: ...

    @property
    def data(self) -> str: ...

    @property
    def meta(self) -> str: ...

    @property
    def hash(self) -> bytes: ...


class Break(NamedTuple):
    stream: str
    stream_position: int
    reason: str


class VerifyReport(NamedTuple):
    events_checked: int
    streams_checked: int
    first_break: Break | None
    damage: tuple[str, ...] = ()
    """What the database's own checks found wrong with its file, tables or indexes."""

    @property
    def intact(self) -> bool:
        return self.first_break is None and not self.damage


def walk_chains(
    rows: Iterable[ChainRow],
    heads: Mapping[str, Head],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Recompute every chain from `rows` (ordered by stream, then stream position)."""
    unseen = dict(heads)
    checked = streams = 0
    current: str | None = None
    previous, expected = GENESIS_HASH, 1
    for row in rows:
        if row.stream != current:
            if current is not None and (broken := _check_head(current, unseen.pop(current, None), expected - 1, previous)):
                return VerifyReport(checked, streams, broken)
            current, previous, expected = row.stream, GENESIS_HASH, 1
            streams += 1
        if row.stream_position != expected:
            return VerifyReport(checked, streams, Break(row.stream, expected, "event missing from the stream"))
        recomputed = chain_hash(
            previous,
            event_id=str(row.id),
            stream=row.stream,
            stream_position=row.stream_position,
            type=row.type,
            occurred=row.occurred,
            data=row.data,
            meta=row.meta,
        )
        if recomputed != row.hash:
            return VerifyReport(
                checked, streams, Break(row.stream, row.stream_position, "content does not match its hash")
            )
        previous, expected = row.hash, expected + 1
        checked += 1
        if progress and checked % 10_000 == 0:
            progress(checked)
    if current is not None and (broken := _check_head(current, unseen.pop(current, None), expected - 1, previous)):
        return VerifyReport(checked, streams, broken)
    if unseen:
        return VerifyReport(checked, streams, Break(min(unseen), 1, "stream has no events"))
    return VerifyReport(checked, streams, None)


def _check_head(stream: str, head: Head | None, last: int, last_hash: bytes) -> Break | None:
    if head is None:
        return Break(stream, 1, "stream has events but no head record")
    if head.version != last:
        return Break(stream, last + 1, f"stream head says {head.version} events, the log has {last}")
    if head.hash != last_hash:
        return Break(stream, last, "stream head hash does not match its last event")
    return None


def verify_log(conn: Connection, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk every stream's chain in the database; `progress(events checked)` now and then."""
    heads = {
        row.stream: Head(row.version, row.head_hash)
        for row in conn.execute(select(streams.c.stream, streams.c.version, streams.c.head_hash))
    }
    columns = (events.c.id, events.c.stream, events.c.stream_position, events.c.type,
               events.c.occurred, events.c.data, events.c.meta, events.c.hash)
    rows = conn.execution_options(yield_per=2000).execute(
        select(*columns).order_by(events.c.stream, events.c.stream_position)
    )
    try:
        return walk_chains(rows, heads, progress)
    finally:
        rows.close()  # the walk may stop at the first break, mid-stream
