"""`SqlEventStore`: what the SQLite and PostgreSQL stores share, put together.

The concerns live in their own modules: planning and chaining an append (events/appending.py),
the read queries (events/reading.py), in-process wake-ups (events/following.py), subscriptions
(events/subscription.py) and the hash-chain walk (events/integrity.py). This class holds the
engine, runs the append retry loop, and translates driver errors.

Subclasses say how to write a planned append (`_write`), where a reader's view of the log ends
(`_after`, `_visible`), how writers are serialised (`_write_lock`) and how other processes
learn of new events (`_announce`, `_listen`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from ledgerflow.events.appending import (
    DuplicateEvent,
    HeadCache,
    Planned,
    StaleHead,
    plan_appends,
    without_stored,
)
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import ConcurrencyConflict, CorruptStore, EventStoreError, InvalidEvent, StoreUnavailable
from ledgerflow.events.following import AppendSignal
from ledgerflow.events.health import storage_problems, translate_corruption
from ledgerflow.events.integrity import Head, VerifyReport, verify_log
from ledgerflow.events.migrations import EVENT_LOG_MIGRATIONS, apply_migrations
from ledgerflow.events.model import ANY, ExpectedVersion, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.reading import LogReader, Page, read_by_ids, read_stream
from ledgerflow.events.subscription import Subscription
from ledgerflow.events.tables import streams
from ledgerflow.events.typefilter import TypePatterns

__all__ = ["SqlEventStore"]

_MAX_ATTEMPTS = 100


class SqlEventStore:
    """The event store over one SQLAlchemy engine."""

    poll_interval: float = 0.5

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.heads = HeadCache()
        """Stream heads this process wrote last (used by the backends' `_write`)."""
        self.signal = AppendSignal()
        """Bumped after every append this process commits or hears of."""
        self._last_written: Cursor | None = None
        self._last_written_lock = threading.Lock()
        self.reader = LogReader(self._after, self._visible())
        translate_corruption(engine)
        with self._translated():
            apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS)

    # -- dialect hooks ---------------------------------------------------------------------

    def _write_lock(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def _after(self, cursor: Cursor) -> ColumnElement[bool]:
        raise NotImplementedError

    def _visible(self) -> ColumnElement[bool] | None:
        """What a feed reader may see: None means every committed row."""
        return None

    def _write(self, plan: list[Planned]) -> tuple[list[StoredEvent], dict[str, Head]]:
        """Write the planned events in one transaction whose first writes are the stream heads.

        A part with no events is a guard: its head is rewritten unchanged, which checks and
        locks its version until commit.

        Raise `StaleHead` when a head moved under us (retried), `DuplicateEvent` when an event
        id is already stored, `ConcurrencyConflict` when an expected version does not hold.
        """
        raise NotImplementedError

    def _announce(self) -> None:
        """Tell other processes that events were appended (after commit)."""

    def _listen(self) -> None:
        """Start hearing other processes' appends (called when someone subscribes)."""

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> list[StoredEvent]:
        """Append `events` to `stream` atomically; see `append_streams`."""
        return self.append_streams([StreamAppend(stream, events, expected_version)])

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        """Append to several streams in one transaction: all of it is written, or none.

        Events whose id is already stored are not written again; their stored form is returned
        in their place, so retrying an append whose reply was lost is safe. Returns the stored
        events in the order given.
        """
        plan = plan_appends(appends)
        wanted = [encoded.event.id for part in plan for encoded in part.events]
        if not wanted:
            self._check_versions(plan)
            return []
        with self._translated(), self._write_lock():
            for _ in range(_MAX_ATTEMPTS):
                try:
                    stored = self._append_once(plan)
                except StaleHead:
                    continue
                except DuplicateEvent:
                    known = self._stored_by_id(wanted)
                    plan = without_stored(plan, known)
                    if all(event_id in known for event_id in wanted):
                        return [known[event_id] for event_id in wanted]
                    continue
                except ConcurrencyConflict:
                    known = self._stored_by_id(wanted)
                    if known and all(event_id in known for event_id in wanted):
                        return [known[event_id] for event_id in wanted]
                    raise
                self._wake()
                if stored:
                    self._written(max(Cursor.parse(event.cursor) for event in stored))
                if len(stored) == len(wanted):
                    return stored
                fresh = {event.id: event for event in stored}
                known = self._stored_by_id([i for i in wanted if i not in fresh])
                return [fresh.get(event_id) or known[event_id] for event_id in wanted]
        raise EventStoreError(f"append gave up after {_MAX_ATTEMPTS} contended attempts")

    @property
    def last_written(self) -> Cursor | None:
        return self._last_written

    def _written(self, cursor: Cursor) -> None:
        with self._last_written_lock:
            if self._last_written is None or cursor > self._last_written:
                self._last_written = cursor

    def _check_versions(self, plan: list[Planned]) -> None:
        """An append of no events still asserts its expected versions."""
        if not plan:
            return
        with self._translated(), self.engine.connect() as conn:

            def fetch(names: list[str]) -> dict[str, Head]:
                query = select(streams.c.stream, streams.c.version, streams.c.head_hash)
                rows = conn.execute(query.where(streams.c.stream.in_(names)))
                return {row.stream: Head(row.version, row.head_hash) for row in rows}

            self.heads.resolve(plan, fetch)

    def _append_once(self, plan: list[Planned]) -> list[StoredEvent]:
        if not plan:
            return []
        stored, new_heads = self._write(plan)
        self.heads.remember(new_heads)
        return stored

    def _stored_by_id(self, ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        with self.engine.connect() as conn:
            return read_by_ids(conn, ids)

    # -- reading ---------------------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """The stream's events from `from_version` (1 = the first) on, in stream order; with
        `types` (names or `*` patterns), only those."""
        with self._translated(), self.engine.connect() as conn:
            return read_stream(conn, stream, from_version, limit, TypePatterns.parse(types) if types else None)

    def read_all(
        self,
        after: str | Cursor | None = None,
        limit: int = 1000,
        types: Sequence[str] | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` events after `after` in global order, optionally of matching types.

        `types` are names or patterns with `*` wildcards (`task-run.*`). A reader that has
        seen everything up to a cursor never later receives an event ordered before it.
        """
        cursor = Cursor.parse(after)
        _check_limit(limit)
        with self._translated(), self.engine.connect() as conn:
            return self.reader.read_after(conn, cursor, limit, TypePatterns.parse(types))

    def read_page(
        self,
        after: str | Cursor | None = None,
        limit: int = 1000,
        types: Sequence[str] | None = None,
    ) -> Page:
        """`read_all`, with the cursor to read on from (see `Page.next_after`)."""
        cursor = Cursor.parse(after)
        _check_limit(limit)
        with self._translated(), self.engine.connect() as conn:
            batch, next_after = self.reader.read_page(conn, cursor, limit, TypePatterns.parse(types))
        return Page(batch, str(next_after))

    def read_last(self, limit: int = 20, types: Sequence[str] | None = None) -> list[StoredEvent]:
        """The newest `limit` visible events (optionally of matching types), oldest first."""
        _check_limit(limit)
        with self._translated(), self.engine.connect() as conn:
            return self.reader.read_last(conn, limit, TypePatterns.parse(types))

    def iter_all(
        self, after: str | Cursor | None = None, batch: int = 1000, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]:
        """Every visible event after `after`, read in batches."""
        cursor = Cursor.parse(after)
        while True:
            page = self.read_all(cursor, batch, types)
            yield from page
            if len(page) < batch:
                return
            cursor = Cursor.parse(page[-1].cursor)

    def head(self) -> str:
        """The cursor of the newest event a reader can see (`"0.0"` on an empty log)."""
        with self._translated(), self.engine.connect() as conn:
            return str(self.reader.head(conn))

    # -- following -------------------------------------------------------------------------

    def subscribe(
        self,
        after: str | Cursor | None = None,
        types: Sequence[str] | None = None,
        batch_size: int = 500,
    ) -> Subscription:
        """Catch up from `after`, then follow new appends live."""
        if batch_size < 1:
            raise InvalidEvent(f"batch_size must be at least 1, not {batch_size}")
        self._listen()
        return Subscription(self, Cursor.parse(after), TypePatterns.parse(types), batch_size)

    def read_feed(
        self, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> tuple[list[StoredEvent], Cursor] | None:
        """One subscription read (see `Subscription`); None once the store is closing."""
        with self.signal.reading() as open_:
            if not open_:
                return None
            with self._translated(), self.engine.connect() as conn:
                return self.reader.read_page(conn, cursor, limit, patterns)

    def _wake(self) -> None:
        self.signal.notify()
        self._announce()

    # -- integrity -------------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check the database itself, then walk every stream's hash chain; report the damage
        found and the first broken link."""
        with self._translated(), self.engine.connect() as conn:
            damage = storage_problems(conn)
        try:
            with self._translated(), self.engine.connect() as conn:
                report = verify_log(conn, progress)
        except CorruptStore as exc:
            return VerifyReport(0, 0, None, (*damage, f"the chain walk stopped: {exc}"))
        return report._replace(damage=tuple(damage))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.signal.closed

    def close(self) -> None:
        # A subscriber may be mid-read: let it hand its connection back before disposing.
        self.signal.close(timeout=10)
        self.engine.dispose()

    def __enter__(self) -> SqlEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _translated() -> _TranslateErrors:
        return _TRANSLATE_ERRORS


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidEvent(f"limit must be at least 1, not {limit}")


class _TranslateErrors:
    """Turns SQLAlchemy's connection failures into StoreUnavailable (a plain class: hot path)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DBAPIError) and (
            exc.connection_invalidated
            or (isinstance(exc, OperationalError) and _is_connection_error(exc))
        ):
            raise StoreUnavailable(
                f"the event store cannot be reached: {exc.orig}: check that the database is up and"
                " LEDGERFLOW_DATABASE_URL names it"
            ) from exc


_TRANSLATE_ERRORS = _TranslateErrors()


def _is_connection_error(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return any(
        needle in message
        for needle in (
            "connection", "could not connect", "unable to open", "server closed", "resolve host",
            "translate host name", "name or service not known", "timeout expired",
        )
    )
