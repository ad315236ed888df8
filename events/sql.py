"""What the SQLite and PostgreSQL stores share: the append, read and verify paths.

Subclasses say how to open the engine, where a reader's view of the log ends (the horizon),
how writers are serialised and how other processes learn of new events.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Unpack
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    false,
    or_,
    select,
    true,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from ledgerflow.events.codec import (
    GENESIS_HASH,
    EncodedEvent,
    chain_hash,
    check_stream_name,
    decode,
    encode,
)
from ledgerflow.events.cursor import START, Cursor
from ledgerflow.events.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    EventStoreError,
    InvalidEvent,
    StoreUnavailable,
)
from ledgerflow.events.integrity import Break, Head, VerifyReport, walk_chains
from ledgerflow.events.migrations import EVENT_LOG_MIGRATIONS, apply_migrations
from ledgerflow.events.model import (
    ANY,
    NO_META,
    NO_STREAM,
    EventMeta,
    ExpectedVersion,
    NewEvent,
    StoredEvent,
    StreamAppend,
    trusted,
)
from ledgerflow.events.subscription import Subscription
from ledgerflow.events.tables import events, streams
from ledgerflow.events.typefilter import TypePatterns

__all__ = ["Break", "Page", "SqlEventStore", "VerifyReport"]


_MAX_ATTEMPTS = 100
_HEAD_CACHE_LIMIT = 50_000
_COLUMNS = (
    events.c.position,
    events.c.tx_id,
    events.c.id,
    events.c.stream,
    events.c.stream_position,
    events.c.type,
    events.c.occurred,
    events.c.recorded,
    events.c.data,
    events.c.meta,
    events.c.hash,
)




class Page(NamedTuple):
    """Events read in global order, and where to read on."""

    events: list[StoredEvent]
    next_after: str
    """The last event returned or, past it, the last one a type filter skipped: a filtered
    reader that moves its cursor here never scans the skipped events again."""


class _StaleHead(Exception):
    """A stream head moved between our read and our write: retry in a new transaction."""


class _DuplicateEvent(Exception):
    """An event id of the batch is already stored: drop the stored ones and retry."""


class _Row(NamedTuple):
    """An event about to be inserted, with its place in its stream and its chain hash."""

    encoded: EncodedEvent
    stream: str
    stream_position: int
    hash: bytes


class _Planned(NamedTuple):
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


class SqlEventStore:
    """The event store over one SQLAlchemy engine."""

    poll_interval: float = 0.5

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._heads: dict[str, Head] = {}
        self._appended = threading.Condition()
        self._generation = 0
        self._closed = False
        self._readers = 0
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
        plan = self._plan(appends)
        wanted = [encoded.event.id for part in plan for encoded in part.events]
        if not wanted:
            self._check_versions(plan)
            return []
        with self._translated(), self._write_lock():
            for _ in range(_MAX_ATTEMPTS):
                try:
                    stored = self._append_once(plan)
                except _StaleHead:
                    continue
                except _DuplicateEvent:
                    known = self._stored_by_id(wanted)
                    plan = self._without(plan, known)
                    if all(event_id in known for event_id in wanted):
                        return [known[event_id] for event_id in wanted]
                    continue
                except ConcurrencyConflict:
                    known = self._stored_by_id(wanted)
                    if known and all(event_id in known for event_id in wanted):
                        return [known[event_id] for event_id in wanted]
                    raise
                self._wake()
                if len(stored) == len(wanted):
                    return stored
                fresh = {event.id: event for event in stored}
                known = self._stored_by_id([i for i in wanted if i not in fresh])
                return [fresh.get(event_id) or known[event_id] for event_id in wanted]
        raise EventStoreError(f"append gave up after {_MAX_ATTEMPTS} contended attempts")

    def _plan(self, appends: Sequence[StreamAppend]) -> list[_Planned]:
        seen_streams: set[str] = set()
        seen_ids: set[UUID] = set()
        plan: list[_Planned] = []
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
            plan.append(_Planned(stream, expected, encoded))
        return plan

    @staticmethod
    def _without(plan: list[_Planned], known: dict[UUID, StoredEvent]) -> list[_Planned]:
        kept = []
        for part in plan:
            remaining = [e for e in part.events if e.event.id not in known]
            if remaining or not part.events:  # a part that never had events is a version guard
                kept.append(part._replace(events=remaining))
        return kept

    def _check_versions(self, plan: list[_Planned]) -> None:
        """An append of no events still asserts its expected versions."""
        if not plan:
            return
        with self._translated(), self.engine.connect() as conn:

            def fetch(names: list[str]) -> dict[str, Head]:
                query = select(streams.c.stream, streams.c.version, streams.c.head_hash)
                rows = conn.execute(query.where(streams.c.stream.in_(names)))
                return {row.stream: Head(row.version, row.head_hash) for row in rows}

            self._resolve_heads(plan, fetch)

    def _append_once(self, plan: list[_Planned]) -> list[StoredEvent]:
        if not plan:
            return []
        stored, new_heads = self._write(plan)
        for stream, head in new_heads.items():
            self._remember(stream, head)
        return stored

    def _write(self, plan: list[_Planned]) -> tuple[list[StoredEvent], dict[str, Head]]:
        """Write the planned events in one transaction whose first writes are the stream heads.

        A part with no events is a guard: its head is rewritten unchanged, which checks and
        locks its version until commit.

        Raise `_StaleHead` when a head moved under us (retried), `_DuplicateEvent` when an event
        id is already stored, `ConcurrencyConflict` when an expected version does not hold.
        """
        raise NotImplementedError

    def _resolve_heads(
        self, plan: list[_Planned], fetch: Callable[[list[str]], dict[str, Head]]
    ) -> dict[str, Head | None]:
        """Each stream's head, from our cache where it can be trusted, else from `fetch`."""
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

    @staticmethod
    def _chain(
        plan: list[_Planned], heads: dict[str, Head | None]
    ) -> tuple[list[_Row], dict[str, Head]]:
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
                rows.append(_Row(encoded, part.stream, version, previous))
            new_heads[part.stream] = Head(version, previous)
        return rows, new_heads

    def _forget(self, streams: Iterable[str]) -> None:
        for stream in streams:
            self._heads.pop(stream, None)

    def _remember(self, stream: str, head: Head) -> None:
        if len(self._heads) >= _HEAD_CACHE_LIMIT:
            self._heads.clear()
        self._heads[stream] = head

    @staticmethod
    def _stored(row: _Row, position: int, tx_id: int, recorded: datetime) -> StoredEvent:
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

    def _stored_by_id(self, ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        found: dict[UUID, StoredEvent] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for row in conn.execute(select(*_COLUMNS).where(events.c.id.in_(chunk))):
                    found[row.id] = self._decode(row)
        return found

    # -- reading ---------------------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None
    ) -> list[StoredEvent]:
        """The stream's events from `from_version` (1 = the first) on, in stream order."""
        query = (
            select(*_COLUMNS)
            .where(events.c.stream == stream, events.c.stream_position >= from_version)
            .order_by(events.c.stream_position)
        )
        if limit is not None:
            query = query.limit(limit)
        with self._translated(), self.engine.connect() as conn:
            return [self._decode(row) for row in conn.execute(query)]

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
        if limit < 1:
            raise InvalidEvent(f"limit must be at least 1, not {limit}")
        with self._translated(), self.engine.connect() as conn:
            return self._read_after(conn, cursor, limit, TypePatterns.parse(types))

    def read_page(
        self,
        after: str | Cursor | None = None,
        limit: int = 1000,
        types: Sequence[str] | None = None,
    ) -> Page:
        """`read_all`, with the cursor to read on from (see `Page.next_after`)."""
        cursor = Cursor.parse(after)
        if limit < 1:
            raise InvalidEvent(f"limit must be at least 1, not {limit}")
        with self._translated(), self.engine.connect() as conn:
            batch, next_after = self._read_page(conn, cursor, limit, TypePatterns.parse(types))
        return Page(batch, str(next_after))

    def read_last(self, limit: int = 20, types: Sequence[str] | None = None) -> list[StoredEvent]:
        """The newest `limit` visible events (optionally of matching types), oldest first."""
        if limit < 1:
            raise InvalidEvent(f"limit must be at least 1, not {limit}")
        patterns = TypePatterns.parse(types)
        conditions = []
        if (visible := self._visible()) is not None:
            conditions.append(visible)
        if patterns:
            conditions.append(_type_condition(patterns))
        query = (
            select(*_COLUMNS)
            .where(and_(true(), *conditions))
            .order_by(events.c.tx_id.desc(), events.c.position.desc())
            .limit(limit)
        )
        with self._translated(), self.engine.connect() as conn:
            return [self._decode(row) for row in reversed(conn.execute(query).all())]

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

    def _read_after(
        self, conn: Connection, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> list[StoredEvent]:
        conditions = [self._after(cursor)]
        visible = self._visible()
        if visible is not None:
            conditions.append(visible)
        if patterns:
            conditions.append(_type_condition(patterns))
        query = (
            select(*_COLUMNS)
            .where(and_(*conditions))
            .order_by(events.c.tx_id, events.c.position)
            .limit(limit)
        )
        return [self._decode(row) for row in conn.execute(query)]

    def _read_page(
        self, conn: Connection, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> tuple[list[StoredEvent], Cursor]:
        # The head is read first: everything up to it is committed and visible to the read
        # that follows, so when fewer than `limit` events match, every event up to the head
        # was either returned or is of another type.
        head = self._head(conn) if patterns else None
        batch = self._read_after(conn, cursor, limit, patterns)
        last = Cursor.parse(batch[-1].cursor) if batch else cursor
        if head is not None and len(batch) < limit and head > last:
            return batch, head
        return batch, last

    def head(self) -> str:
        """The cursor of the newest event a reader can see (`"0.0"` on an empty log)."""
        with self._translated(), self.engine.connect() as conn:
            return str(self._head(conn))

    def _head(self, conn: Connection) -> Cursor:
        query = select(events.c.tx_id, events.c.position)
        visible = self._visible()
        if visible is not None:
            query = query.where(visible)
        query = query.order_by(events.c.tx_id.desc(), events.c.position.desc()).limit(1)
        row = conn.execute(query).first()
        return Cursor(row.tx_id, row.position) if row else START

    def _decode(self, row: Row[Any, Unpack[tuple[Any, ...]]]) -> StoredEvent:
        try:
            meta_json = decode(row.meta)
            return trusted(
                StoredEvent,
                {
                    "id": row.id,
                    "type": row.type,
                    "stream": row.stream,
                    "occurred": row.occurred,
                    "data": decode(row.data),
                    "meta": EventMeta(**meta_json) if meta_json else NO_META,
                    "position": row.position,
                    "stream_position": row.stream_position,
                    "recorded": row.recorded,
                    "hash": row.hash.hex(),
                    "cursor": f"{row.tx_id}.{row.position}",
                },
            )
        except (ValueError, TypeError) as exc:
            raise CorruptEvent(f"event at position {row.position} cannot be decoded: {exc}") from exc

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

    def _wake(self) -> None:
        self._wake_local()
        self._announce()

    def _wake_local(self) -> None:
        with self._appended:
            self._generation += 1
            self._appended.notify_all()

    def _wait_for_append(self, seen: int, timeout: float) -> bool:
        """Block until an append newer than generation `seen` or until `timeout`."""
        with self._appended:
            return self._appended.wait_for(
                lambda: self._generation != seen or self._closed, timeout
            ) and not self._closed

    # -- integrity -------------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Walk every stream's hash chain; report the first broken link."""
        with self._translated(), self.engine.connect() as conn:
            heads = {
                row.stream: Head(row.version, row.head_hash)
                for row in conn.execute(select(streams.c.stream, streams.c.version, streams.c.head_hash))
            }
            rows = conn.execution_options(yield_per=2000).execute(
                select(*_COLUMNS).order_by(events.c.stream, events.c.stream_position)
            )
            try:
                return walk_chains(rows, heads, progress)
            finally:
                rows.close()  # the walk may stop at the first break, mid-stream

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._appended:
            self._closed = True
            self._appended.notify_all()
            # A subscriber may be mid-read: let it hand its connection back before disposing.
            self._appended.wait_for(lambda: self._readers == 0, timeout=10)
        self.engine.dispose()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection | None]:
        """A connection for one subscription read, or None once the store is closing."""
        with self._appended:
            if self._closed:
                yield None
                return
            self._readers += 1
        try:
            with self.engine.connect() as conn:
                yield conn
        finally:
            with self._appended:
                self._readers -= 1
                self._appended.notify_all()

    def __enter__(self) -> SqlEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _translated() -> _TranslateErrors:
        return _TRANSLATE_ERRORS


class _TranslateErrors:
    """Turns SQLAlchemy's connection failures into StoreUnavailable (a plain class: hot path)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, DBAPIError) and (
            exc.connection_invalidated
            or (isinstance(exc, OperationalError) and _is_connection_error(exc))
        ):
            raise StoreUnavailable(f"the event store cannot be reached: {exc.orig}") from exc


_TRANSLATE_ERRORS = _TranslateErrors()


def _is_connection_error(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return any(
        needle in message
        for needle in ("connection", "could not connect", "unable to open", "server closed")
    )


def _type_condition(patterns: TypePatterns) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if patterns.exact:
        clauses.append(events.c.type.in_(sorted(patterns.exact)))
    clauses.extend(events.c.type.like(like, escape="\\") for like in patterns.likes)
    return or_(*clauses) if clauses else false()
