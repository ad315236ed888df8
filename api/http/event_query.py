"""`GET /api/events` reads: type, stream, resource and time filters over cursor pages.

The store filters by type and stream itself; a resource (a flow-run or task-run id) and a time
window are checked here, event by event. A flow run's events are its stream
`flow-run-<id>`, so a flow-run resource reads only that stream; a task-run id (which names no
stream) is found by its payload while reading the log in global order.

Filters may skip events: `next_after` is then the cursor of the last event examined, not the
last one returned, so the next page neither repeats nor re-reads what was skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.projections.errors import InvalidQuery

__all__ = ["EventQuery", "EventsPage", "read_page"]

_CHUNK = 1000


@dataclass(frozen=True)
class EventQuery:
    types: Sequence[str] = ()
    """Event types or `*` patterns; empty: every type."""
    stream: str | None = None
    resource: str | None = None
    """A flow-run or task-run id: events whose payload's flow_run_id or task_run_id it is."""
    since: datetime | None = None
    """Events that occurred at or after this time (aware)."""
    until: datetime | None = None
    """Events that occurred before this time (aware)."""
    patterns: TypePatterns = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidQuery(f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})")
        object.__setattr__(self, "patterns", TypePatterns.parse(list(self.types)))

    @property
    def checks_each_event(self) -> bool:
        return self.resource is not None or self.since is not None or self.until is not None

    def matches(self, event: StoredEvent) -> bool:
        if not self.patterns.matches(event.type):
            return False
        if self.since is not None and event.occurred < self.since:
            return False
        if self.until is not None and event.occurred >= self.until:
            return False
        if self.resource is not None:
            data = event.data
            return self.resource in (data.get("flow_run_id"), data.get("task_run_id"))
        return True


@dataclass(frozen=True)
class EventsPage:
    events: list[StoredEvent]
    next_after: str


def read_page(store: EventStore, query: EventQuery, after: Cursor, limit: int) -> EventsPage:
    """Up to `limit` matching events after `after`, in global order."""
    stream = query.stream or _resource_stream(store, query.resource)
    if stream is None and not query.checks_each_event:
        events, next_after = store.read_page(after=after, limit=limit, types=query.types or None)
        return EventsPage(events, next_after)
    candidates = (
        _stream_after(store, stream, after)
        if stream is not None
        else store.iter_all(after=after, batch=_CHUNK, types=query.types or None)
    )
    found: list[StoredEvent] = []
    examined = str(after)
    for event in candidates:
        examined = event.cursor
        if query.matches(event):
            found.append(event)
            if len(found) == limit:
                break
    return EventsPage(found, examined)


def _resource_stream(store: EventStore, resource: str | None) -> str | None:
    """The stream holding every event of `resource` when it is a flow run, else None."""
    if resource is None:
        return None
    stream = flow_run_stream(resource)
    return stream if store.read_stream(stream, limit=1) else None


def _stream_after(store: EventStore, stream: str, after: Cursor) -> Iterator[StoredEvent]:
    # A stream's order is its part of the global order, so "after a cursor" is a suffix of it.
    version = 1
    while True:
        page = store.read_stream(stream, from_version=version, limit=_CHUNK)
        yield from (e for e in page if Cursor.parse(e.cursor) > after)
        if len(page) < _CHUNK:
            return
        version = page[-1].stream_position + 1
