"""Durable consumers: a named checkpoint in the log, catch-up then follow, at-least-once delivery.

A consumer reads the log after its checkpoint (events/checkpoints.py) in batches, hands each
batch to its handler, then moves the checkpoint past the batch. After a restart it goes on
from the checkpoint, so a batch whose handling was cut short (an error, a crash, kill -9) is
delivered again: every event is handled at least once.

Two shapes of handler:

- `Consumer`: `handler(batch)` acts outside the database (an automation's notification, the
  scheduler's next run). The checkpoint moves once the handler has returned, so a crash in
  between hands the batch over again. Make the effects idempotent: append reactions with
  `ledgerflow.events.ids.derived_id(...)` of what caused them, and the store's duplicate-id
  rule writes each reaction once however often its cause is handled. A handler may stop
  short of the batch's end by returning the cursor it handled up to: the checkpoint moves
  there and the rest is read again, with the type filter as it stands then (the automation
  engine does this when a rule change widens the types it reads).
- `TransactionalConsumer`: `handler(conn, batch)` writes inside the transaction that moves the
  checkpoint (a projection's rows): both commit or neither, so the effect of each event is
  applied exactly once, even with two processes running the same consumer.

The checkpoint only moves by compare-and-swap from the value the mover read. Two processes
running one consumer (the same name) therefore never move it backwards, and never both commit
a transactional batch: the loser finds the checkpoint moved, reads where it stands, and goes
on from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from sqlalchemy import Connection

from ledgerflow.events import checkpoints
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.service import LoopService
from ledgerflow.events.store import EventStore
from ledgerflow.events.transactions import engine_of, write_transaction

__all__ = ["BaseConsumer", "Batch", "Consumer", "Handler", "TransactionalConsumer", "TransactionalHandler", "Types"]


class Batch(NamedTuple):
    """Events to handle, in log order, and where the checkpoint moves once they are handled."""

    events: list[StoredEvent]
    upto: Cursor
    """Past the last event, and past any events of other types that the consumer's type
    filter skipped after it: a transactional batch may have no events and still move."""


Handler = Callable[[Batch], Cursor | None]
"""Returns None once the whole batch is handled, or the cursor of the last event it handled
(the events after it are delivered again)."""
Types = Sequence[str] | Callable[[], Sequence[str] | None] | None
"""Type names or `*` patterns (None: every type), or a function giving them, asked before
each read."""
TransactionalHandler = Callable[[Connection, Batch], None]


class BaseConsumer:
    """What both shapes share: the checkpoint, catching up, following, running as a service.

    `types` filters the events delivered (names or `*` patterns; None: all; or a function
    that gives them, asked before each read); the checkpoint still moves past the events it
    skips. A consumer seen for the first time starts at
    `start` (None: the beginning of the log; `store.head()`: from now on)."""

    def __init__(
        self,
        store: EventStore,
        name: str,
        *,
        types: Types = None,
        batch_size: int = 500,
        start: str | Cursor | None = None,
    ) -> None:
        if not name or len(name) > 200:
            raise ValueError(f"a consumer's name must be 1-200 characters, not {name!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.store = store
        self.engine = engine_of(store)
        self.name = name
        self._types = types if callable(types) else (list(types) if types else None)
        self.batch_size = batch_size
        self.start = Cursor.parse(start)
        self._created = False

    # -- the checkpoint -------------------------------------------------------------------

    def checkpoint(self) -> Cursor:
        """Where the consumer stands: every event up to here was handled."""
        with self.engine.connect() as conn:
            stored = checkpoints.read(conn, self.name)
        return self.start if stored is None else stored

    def ensure(self) -> Cursor:
        """Create the checkpoint (at `start`) unless it exists; return where it stands."""
        with write_transaction(self.engine) as conn:
            stored = checkpoints.create(conn, self.name, self.start)
        self._created = True
        return stored

    @property
    def types(self) -> list[str] | None:
        """The type filter the next read uses."""
        wanted = self._types() if callable(self._types) else self._types
        return list(wanted) if wanted else None

    def _stands(self) -> Cursor:
        return self.checkpoint() if self._created else self.ensure()

    # -- handling -------------------------------------------------------------------------

    def _deliver(self, batch: Batch, seen: Cursor) -> Cursor | None:
        """Handle `batch`, read after checkpoint `seen`, and move the checkpoint to its end (or
        to where the handler stopped); return the checkpoint now, or None if another process
        moved it first and nothing of the batch was kept."""
        raise NotImplementedError

    def catch_up(self, limit: int | None = None) -> int:
        """Handle what the log has past the checkpoint, up to its head (or about `limit`
        events); return how many events were handled."""
        seen = self._stands()
        handled = 0
        while limit is None or handled < limit:
            page = self.store.read_page(after=seen, limit=self.batch_size, types=self.types)
            upto = Cursor.parse(page.next_after)
            if upto <= seen:
                break
            moved = self._deliver(Batch(page.events, upto), seen)
            if moved is None:
                seen = self.checkpoint()
                continue
            handled += sum(1 for e in page.events if Cursor.parse(e.cursor) <= moved)
            if moved < upto:  # the handler stopped short: read on from there
                seen = moved
                continue
            seen = moved
            if len(page.events) < self.batch_size:
                break  # the page reached the head: the next read would find nothing
        return handled

    def run(
        self,
        stop: threading.Event,
        on_batch: Callable[[Batch], None] | None = None,
        *,
        poll: float = 0.2,
    ) -> None:
        """Catch up, then follow the log, handling events as they are appended, until `stop`
        is set (noticed within `poll` seconds) or the store is closed; `on_batch(batch)` after
        each batch handled. A handler's error ends the run with the checkpoint before the
        failed batch."""
        seen: Cursor | None = self._stands()
        while seen is not None:
            seen = self._follow(seen, stop, on_batch, poll)

    def _follow(
        self, seen: Cursor, stop: threading.Event, on_batch: Callable[[Batch], None] | None, poll: float
    ) -> Cursor | None:
        """`run` with one type filter: the cursor to follow on from when a handler stopped
        short (the filter may have changed), None when stopped or closed."""
        with self.store.subscribe(after=seen, types=self.types, batch_size=self.batch_size) as feed:
            while not (stop.is_set() or feed.closed):
                events = feed.poll(timeout=poll)
                if feed.cursor <= seen:
                    continue
                batch = Batch(events, feed.cursor)
                moved = self._deliver(batch, seen)
                if moved is None:  # another process took this batch: read on from where it left off
                    seen = feed.cursor = self.checkpoint()
                    continue
                seen = moved
                if on_batch is not None:
                    on_batch(batch)
                if seen < feed.cursor:
                    return seen
                if seen > feed.cursor:  # another process is ahead of us
                    feed.cursor = seen
        return None

    def service(self, *, interval: float | None = None, error_pause: float = 5.0) -> LoopService:
        """This consumer as a `Service` of its own: following the log (`run`) or, with
        `interval`, catching up every `interval` seconds, which makes fewer and bigger batches
        under a heavy write load. An error is logged and the consumer resumes from its
        checkpoint `error_pause` seconds later."""
        name = f"consumer-{self.name}"
        if interval is not None:

            def catch_up() -> None:
                self.catch_up()

            return LoopService(name, catch_up, interval, error_pause=error_pause)

        def follow() -> None:
            self.run(loop.stopping)

        loop = LoopService(name, follow, 0.0, error_pause=error_pause)
        return loop


class Consumer(BaseConsumer):
    """At-least-once delivery to `handler(batch)`, whose effects live outside the database;
    the checkpoint moves after the handler returns. Batches always hold events."""

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: Handler,
        *,
        types: Types = None,
        batch_size: int = 500,
        start: str | Cursor | None = None,
    ) -> None:
        super().__init__(store, name, types=types, batch_size=batch_size, start=start)
        self.handler = handler

    def _deliver(self, batch: Batch, seen: Cursor) -> Cursor:
        stopped = self.handler(batch) if batch.events else None
        upto = batch.upto if stopped is None else stopped
        if not seen < upto <= batch.upto:
            raise ValueError(f"consumer {self.name!r}: a handler stops within its batch, not at {upto}")
        # We handled everything up to `upto`: whatever another process did meanwhile, the
        # checkpoint may move there, unless it already stands further.
        while True:
            with write_transaction(self.engine) as conn:
                if checkpoints.advance(conn, self.name, seen, upto):
                    return upto
                current = checkpoints.read(conn, self.name) or upto
            if current >= upto:
                return current
            seen = current


class TransactionalConsumer(BaseConsumer):
    """Exactly-once effects: `handler(conn, batch)` runs inside the transaction that moves the
    checkpoint, and commits with it. The handler is also called for a batch with no events
    when the checkpoint moves past skipped ones, so it may keep positions of its own."""

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: TransactionalHandler,
        *,
        types: Types = None,
        batch_size: int = 500,
        start: str | Cursor | None = None,
    ) -> None:
        super().__init__(store, name, types=types, batch_size=batch_size, start=start)
        self.handler = handler

    def _deliver(self, batch: Batch, seen: Cursor) -> Cursor | None:
        with write_transaction(self.engine) as conn:
            # The compare-and-swap is the transaction's first write: on PostgreSQL it locks the
            # checkpoint row, so a second process handling the same batch waits here, then
            # finds the checkpoint moved and writes nothing.
            if not checkpoints.advance(conn, self.name, seen, batch.upto):
                return None
            self.handler(conn, batch)
        return batch.upto
