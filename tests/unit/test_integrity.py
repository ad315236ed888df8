"""The chain walk names the first broken link, whatever was tampered with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID, uuid4

from ledgerflow.events.codec import GENESIS_HASH, chain_hash
from ledgerflow.events.integrity import Head, walk_chains


class Row(NamedTuple):
    id: UUID
    stream: str
    stream_position: int
    type: str
    occurred: datetime
    data: str
    meta: str
    hash: bytes


def chain(stream: str, count: int) -> list[Row]:
    rows, previous = [], GENESIS_HASH
    for position in range(1, count + 1):
        row = Row(uuid4(), stream, position, "t", datetime(2026, 1, 1, tzinfo=UTC), f'{{"n":{position}}}', "{}", b"")
        previous = chain_hash(
            previous,
            event_id=str(row.id),
            stream=stream,
            stream_position=position,
            type=row.type,
            occurred=row.occurred,
            data=row.data,
            meta=row.meta,
        )
        rows.append(row._replace(hash=previous))
    return rows


def heads_of(*chains: list[Row]) -> dict[str, Head]:
    return {c[-1].stream: Head(c[-1].stream_position, c[-1].hash) for c in chains}


def test_intact_chains_verify() -> None:
    a, b = chain("a", 3), chain("b", 2)
    report = walk_chains(a + b, heads_of(a, b))
    assert report.intact
    assert (report.events_checked, report.streams_checked) == (5, 2)


def test_changed_content_is_named() -> None:
    a = chain("a", 3)
    a[1] = a[1]._replace(data='{"n":99}')
    report = walk_chains(a, heads_of(a))
    assert report.first_break is not None
    assert report.first_break[:2] == ("a", 2)
    assert "hash" in report.first_break.reason


def test_missing_middle_event_is_named() -> None:
    a = chain("a", 3)
    report = walk_chains([a[0], a[2]], heads_of(a))
    assert report.first_break is not None
    assert report.first_break[:2] == ("a", 2)


def test_missing_last_event_is_caught_by_the_head() -> None:
    a = chain("a", 3)
    report = walk_chains(a[:2], heads_of(a))
    assert report.first_break is not None
    assert report.first_break[:2] == ("a", 3)


def test_a_rewritten_chain_does_not_match_its_head() -> None:
    a, forged = chain("a", 2), chain("a", 2)
    report = walk_chains(forged, heads_of(a))
    assert report.first_break is not None
    assert "head hash" in report.first_break.reason


def test_head_without_events_and_events_without_head() -> None:
    a, b = chain("a", 1), chain("b", 1)
    assert walk_chains(a, heads_of(a, b)).first_break == ("b", 1, "stream has no events")
    report = walk_chains(a + b, heads_of(a))
    assert report.first_break is not None and report.first_break.stream == "b"


def test_progress_is_reported() -> None:
    a = chain("a", 20_000)
    seen: list[int] = []
    assert walk_chains(a, heads_of(a), seen.append).intact
    assert seen == [10_000, 20_000]
