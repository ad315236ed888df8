"""What the runtime needs of the log: append batches, read a stream, read the feed.

The event store satisfies it in embedded mode; `HttpEventLog` (runtime/remote.py) when the
runtime talks to an API server (`LEDGERFLOW_API_URL`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledgerflow.events import Cursor, Page, StoredEvent, StreamAppend

__all__ = ["EventLog", "EventSink"]


class EventSink(Protocol):
    """Where the writer's batches go."""

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]: ...


class EventLog(EventSink, Protocol):
    """A sink that can also be read: a run's stream, and the feed after a cursor."""

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]: ...

    def read_page(
        self, after: str | Cursor | None = None, limit: int = 1000, types: Sequence[str] | None = None
    ) -> Page: ...

    def head(self) -> str: ...
