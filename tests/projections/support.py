"""Helpers for projection tests: stored-looking events without a store, table snapshots."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select

from ledgerflow.events import Cursor, EventStore, NewEvent, StoredEvent
from ledgerflow.events.model import EventMeta
from ledgerflow.projections.runner import ProjectionRunner

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def as_stored(events: Sequence[NewEvent], stream: str = "flow-run-x", start: int = 1) -> list[StoredEvent]:
    """What the store would hand back for `events` (positions from `start`)."""
    return [
        StoredEvent.model_construct(
            id=event.id, type=event.type, stream=stream, occurred=event.occurred, data=event.data,
            meta=EventMeta(), position=start + n, stream_position=start + n, recorded=event.occurred,
            hash="", cursor=f"0.{start + n}",
        )
        for n, event in enumerate(events)
    ]


def wait_visible(store: EventStore, stored: Sequence[StoredEvent], timeout: float = 300) -> None:
    """Wait until readers can see `stored`. On PostgreSQL a write transaction still running
    anywhere on the server (another test's, a benchmark's) holds the feed's horizon back."""
    if not stored:
        return
    target = max(Cursor.parse(event.cursor) for event in stored)
    deadline = time.monotonic() + timeout
    while Cursor.parse(store.head()) < target:
        assert time.monotonic() < deadline, f"appended events not visible after {timeout} s"
        time.sleep(0.01)


def interleave(rng: random.Random, streams: Sequence[Sequence[T]]) -> list[T]:
    """The streams' items merged in a random order that keeps each stream's own order."""
    queues = [list(reversed(items)) for items in streams if items]
    merged: list[T] = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return merged


def snapshot(runner: ProjectionRunner, name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of a projection's live tables, sorted, comparable across generations."""
    tables = runner.tables(name)
    with runner.engine.connect() as conn:
        return {
            short: sorted(tuple(row) for row in conn.execute(select(table)))
            for short, table in tables.items()
        }


class Exploding:
    """A projection that behaves like `inner` but raises on its `fail_on`-th fold: a crash in
    the middle of a batch's transaction."""

    def __init__(self, inner: Any, fail_on: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.types = inner.types
        self.table_names = inner.table_names
        self.calls = 0
        self.fail_on = fail_on

    def define_tables(self, metadata: Any, prefix: str) -> Any:
        return self.inner.define_tables(metadata, prefix)

    def keys(self, events: Any, rows: Any) -> Any:
        return self.inner.keys(events, rows)

    def fold(self, rows: Any, events: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_on:
            raise Crash(f"{self.name} crashed on fold {self.calls}")
        return self.inner.fold(rows, events)


class Crash(RuntimeError):
    pass
