"""Request and response bodies of the event endpoints (runs use projections.models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events import NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.model import AwareDatetime, EventType, new_id, trusted, utcnow

__all__ = [
    "AppendRequest",
    "AppendResult",
    "EventIn",
    "EventOut",
    "EventPage",
    "StreamAppendIn",
    "event_json",
]

MAX_EVENTS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventIn(_Strict):
    """An event to append; give `id` to make retries safe (a stored id is not written twice)."""

    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    id: UUID | None = Field(default=None, description="chosen by the server when omitted")
    meta: EventMeta = EventMeta()
    occurred: AwareDatetime | None = None

    def to_new(self) -> NewEvent:
        # Every field was validated as NewEvent validates it (same types): skip a second pass.
        values = {
            "type": self.type,
            "data": self.data,
            "id": self.id or new_id(),
            "meta": self.meta,
            "occurred": self.occurred or utcnow(),
        }
        return trusted(NewEvent, values)


class StreamAppendIn(_Strict):
    stream: str = Field(min_length=1, max_length=200)
    events: list[EventIn] = Field(max_length=MAX_EVENTS)
    expected_version: int | Literal["any", "no stream"] = Field(
        default="any",
        description="'any', 'no stream', or the stream's current version (0 = empty)",
    )

    def to_append(self) -> StreamAppend:
        expected = self.expected_version
        return StreamAppend(self.stream, [e.to_new() for e in self.events], NO_STREAM if expected == NO_STREAM else expected)


class AppendRequest(_Strict):
    appends: list[StreamAppendIn] = Field(min_length=1, max_length=1000)


class EventOut(BaseModel):
    id: UUID
    type: str
    stream: str
    occurred: datetime
    data: dict[str, Any]
    meta: dict[str, str]
    position: int
    stream_position: int
    recorded: datetime
    hash: str
    cursor: str


class AppendResult(BaseModel):
    events: list[EventOut]
    """The stored events in the order sent (already-stored ids return their stored form)."""


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: str
    """Pass as `after` to read on; the same cursor again when nothing newer exists yet."""


def event_json(event: StoredEvent) -> dict[str, Any]:
    """The wire form of a stored event (orjson renders the UUID and datetimes)."""
    return {
        "id": event.id,
        "type": event.type,
        "stream": event.stream,
        "occurred": event.occurred,
        "data": event.data,
        "meta": event.meta.as_json(),
        "position": event.position,
        "stream_position": event.stream_position,
        "recorded": event.recorded,
        "hash": event.hash,
        "cursor": event.cursor,
    }
