"""The part of the append path that both SQL stores share: planning, heads, chaining.

An append is first planned (streams and ids checked, payloads encoded), then written by a
backend in one transaction whose first writes move the stream heads: the backend resolves each
stream's head (from the `HeadCache` where it can be trusted), chains the new events' hashes
onto it (`chain`), and writes heads and rows. The exceptions below are how a backend tells the
store's retry loop (events/sql.py) what happened; they never leave the store.

Internal to the event log's SQL stores: nothing outside events/ uses this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from ledgerflow.events.codec import GENESIS_HASH, EncodedEvent, chain_hash, check_stream_name, decode, encode
from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.integrity import Head
from ledgerflow.events.model import ANY, NO_STREAM, ExpectedVersion, NewEvent, StoredEvent, StreamAppend, trusted

__all__ = [
    "DuplicateEvent",
    "HeadCache",
    "Planned",
    "PlannedRow",
    "StaleHead",
    "chain",
    "plan_appends",
    "stored_event",
    "without_stored",
]

_HEAD_CACHE_LIMIT = 50_000


class StaleHead(Exception):
    """A stream head moved between our read and our write: retry in a new transaction."""


class DuplicateEvent(Exception):
    """An event id of the batch is already stored: drop the stored ones and retry."""


class PlannedRow(NamedTuple):
    """An event about to be inserted, with its place in its stream and its chain hash."""

    encoded: EncodedEvent
    stream: str
    stream_position: int
    hash: bytes


class Planned(NamedTuple):
    """One stream's part of an append: its expected version and its encoded events (none:
    the part only guards the stream's version)."""

    stream: str
    expected: ExpectedVersion
    events: list[EncodedEvent]


def _check_expected(stream: str, expected: ExpectedVersion) -> None:
    if expected in (ANY, NO_STREAM):
        return
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidEvent(
            f"expected version for {stream!r} must be 'any', 'no stream' or a stream position "
            f">= 0, not {expected!r}"
        )


def _matches(expected: ExpectedVersion, actual: int) -> bool:
    if expected == ANY:
        return True
    if expected == NO_STREAM:
        return actual == 0
    return expected == actual


def plan_appends(appends: Sequence[StreamAppend]) -> list[Planned]:
    """Check and encode `appends`; raise InvalidEvent, with nothing written, for bad input."""
    seen_streams: set[str] = set()
    seen_ids: set[UUID] = set()
    plan: list[Planned] = []
    index = 0
    for stream, batch, expected in appends:
        check_stream_name(stream)
        _check_expected(stream, expected)
        if stream in seen_streams:
            raise InvalidEvent(f"stream {stream!r} appears twice in one append")
        seen_streams.add(stream)
        encoded = []
        for event in batch:
            if not isinstance(event, NewEvent):
                raise InvalidEvent(f"event {index} is a {type(event).__name__}, not a NewEvent")
            if event.id in seen_ids:
                raise InvalidEvent(f"event id {event.id} appears twice in one append")
            seen_ids.add(event.id)
            encoded.append(encode(event, index))
            index += 1
        plan.append(Planned(stream, expected, encoded))
    return plan


def without_stored(plan: list[Planned], known: dict[UUID, StoredEvent]) -> list[Planned]:
    """The plan without the events already stored (`known`)."""
    kept = []
    for part in plan:
        remaining = [e for e in part.events if e.event.id not in known]
        if remaining or not part.events:  # a part that never had events is a version guard
            kept.append(Planned(part.stream, part.expected, remaining))
    return kept


class HeadCache:
    """Stream heads this process wrote last. A cached head is only trusted when it matches
    the writer's expected version; the head UPDATE's version check catches a stale one."""

    def __init__(self) -> None:
        self._heads: dict[str, Head] = {}

    def resolve(
        self, plan: list[Planned], fetch: Callable[[list[str]], dict[str, Head]]
    ) -> dict[str, Head | None]:
        """Each stream's head, from the cache where it can be trusted, else from `fetch`;
        raise ConcurrencyConflict when an expected version does not hold."""
        heads: dict[str, Head | None] = {}
        unknown = []
        for part in plan:
            cached = self._heads.get(part.stream)
            if cached is not None and _matches(part.expected, cached.version):
                heads[part.stream] = cached
            else:
                unknown.append(part.stream)
        if unknown:
            found = fetch(unknown)
            for stream in unknown:
                heads[stream] = found.get(stream)
        for part in plan:
            head = heads[part.stream]
            actual = head.version if head else 0
            if not _matches(part.expected, actual):
                self._heads.pop(part.stream, None)
                raise ConcurrencyConflict(part.stream, part.expected, actual)
        return heads

    def forget(self, streams: Iterable[str]) -> None:
        for stream in streams:
            self._heads.pop(stream, None)

    def remember(self, heads: dict[str, Head]) -> None:
        if len(self._heads) + len(heads) > _HEAD_CACHE_LIMIT:
            self._heads.clear()
        self._heads.update(heads)


def chain(plan: list[Planned], heads: dict[str, Head | None]) -> tuple[list[PlannedRow], dict[str, Head]]:
    """The rows to insert, each hash chained onto its stream's, and the streams' new heads."""
    rows = []
    new_heads = {}
    for part in plan:
        head = heads[part.stream]
        version, previous = (head.version, head.hash) if head else (0, GENESIS_HASH)
        if head is None and not part.events:
            continue  # guarding that a stream does not exist: nothing to lock or write
        for encoded in part.events:
            version += 1
            event = encoded.event
            previous = chain_hash(
                previous,
                event_id=str(event.id),
                stream=part.stream,
                stream_position=version,
                type=event.type,
                occurred=event.occurred,
                data=encoded.data,
                meta=encoded.meta,
            )
            rows.append(PlannedRow(encoded, part.stream, version, previous))
        new_heads[part.stream] = Head(version, previous)
    return rows, new_heads


def stored_event(row: PlannedRow, position: int, tx_id: int, recorded: datetime) -> StoredEvent:
    """What a read would return for `row`, once written at `position` in transaction `tx_id`."""
    event = row.encoded.event
    return trusted(
        StoredEvent,
        {
            "id": event.id,
            "type": event.type,
            "stream": row.stream,
            "occurred": event.occurred,
            "data": decode(row.encoded.data),  # what every read returns, not the writer's objects
            "meta": event.meta,
            "position": position,
            "stream_position": row.stream_position,
            "recorded": recorded,
            "hash": row.hash.hex(),
            "cursor": f"{tx_id}.{position}",
        },
    )
