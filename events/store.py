"""The event store interface and how a store is picked from a database URL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import StoreUnavailable
from ledgerflow.events.model import ExpectedVersion, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.settings import load_settings
from ledgerflow.events.integrity import VerifyReport
from ledgerflow.events.reading import Page
from ledgerflow.events.subscription import Subscription

__all__ = ["EventStore", "open_store", "redacted"]


class EventStore(Protocol):
    @property
    def last_written(self) -> Cursor | None:
        """The cursor of the newest event this store object appended (None before its first):
        what a reader in this process must reach to read its own writes."""
        ...

    def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion = ...
    ) -> list[StoredEvent]: ...

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]: ...

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]: ...

    def read_all(
        self,
        after: str | Cursor | None = None,
        limit: int = 1000,
        types: Sequence[str] | None = None,
    ) -> list[StoredEvent]: ...

    def read_page(
        self,
        after: str | Cursor | None = None,
        limit: int = 1000,
        types: Sequence[str] | None = None,
    ) -> Page: ...

    def read_last(self, limit: int = 20, types: Sequence[str] | None = None) -> list[StoredEvent]: ...

    def iter_all(
        self, after: str | Cursor | None = None, batch: int = 1000, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]: ...

    def head(self) -> str: ...

    def subscribe(
        self, after: str | Cursor | None = None, types: Sequence[str] | None = None, batch_size: int = 500
    ) -> Subscription: ...

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport: ...

    def close(self) -> None: ...

    def __enter__(self) -> EventStore: ...

    def __exit__(self, *exc: object) -> None: ...


def open_store(url: str | None = None) -> EventStore:
    """The store for `url`: `sqlite:///path` or `postgresql://...` (None: the configured one).

    A SQLite file's folder must exist, unless it is the configured `LEDGERFLOW_HOME`, which is
    created (readable by its owner only).
    """
    settings = load_settings()
    url = url or settings.store_url
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("sqlite"):
        from ledgerflow.events.sqlite import SqliteEventStore

        return SqliteEventStore(url, home=settings.home)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from ledgerflow.events.postgres import PostgresEventStore

        return PostgresEventStore(url.replace("postgres://", "postgresql://", 1))
    if not scheme:
        raise StoreUnavailable(f"{redacted(url)!r} is not a database URL: use sqlite:///path or postgresql://...")
    raise StoreUnavailable(
        f"unsupported database URL scheme {scheme!r} in {redacted(url)}: use sqlite:///path or postgresql://..."
    )


def redacted(url: str) -> str:
    """The URL with its password, if any, masked."""
    return re.sub(r"^([^:/]+://[^:/@]*):[^@/]*@", r"\1:***@", url)
