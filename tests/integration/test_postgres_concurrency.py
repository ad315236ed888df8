"""Many writers on PostgreSQL while a subscriber follows live: nothing lost, nothing repeated,
nothing out of order; and the horizon that makes it so holds the feed back rather than skip."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from ledgerflow.events import (
    ANY,
    ConcurrencyConflict,
    Cursor,
    EventStore,
    NewEvent,
    StoredEvent,
    StreamAppend,
    open_store,
)
from tests.contract.support import ev, insert_behind_the_store

WRITERS = 8
PER_WRITER = 2_000
SHARED = ["shared-0", "shared-1", "shared-2"]


@pytest.fixture
def pg_stores(postgres_schema_url: str) -> Iterator[Callable[[], EventStore]]:
    opened: list[EventStore] = []

    def make() -> EventStore:
        opened.append(open_store(postgres_schema_url))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


class Writer(threading.Thread):
    """Single and batched appends to its own stream, shared streams with ANY, several streams in
    one transaction, and optimistic appends at an exact version that retry on conflict."""

    def __init__(self, store: EventStore, number: int) -> None:
        super().__init__(name=f"writer-{number}")
        self.store, self.number = store, number
        self.conflicts = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _write(self) -> None:
        rng = random.Random(self.number)
        known = dict.fromkeys(SHARED, 0)
        written = 0
        while written < PER_WRITER:
            size = min(rng.choice([1, 1, 5, 20]), PER_WRITER - written)
            batch = [NewEvent(type="stress", data={"w": self.number, "n": written + i}) for i in range(size)]
            roll = rng.random()
            if roll < 0.4:
                self.store.append(f"own-{self.number}", batch)
            elif roll < 0.7:
                self.store.append(rng.choice(SHARED), batch, ANY)
            elif roll < 0.85 and size > 1:
                half = size // 2
                self.store.append_streams(
                    [StreamAppend(f"own-{self.number}", batch[:half]), StreamAppend(rng.choice(SHARED), batch[half:])]
                )
            else:
                stream = rng.choice(SHARED)
                while True:  # catch up on the stream, append expecting its version
                    known[stream] += len(self.store.read_stream(stream, from_version=known[stream] + 1))
                    try:
                        known[stream] = self.store.append(stream, batch, known[stream])[-1].stream_position
                        break
                    except ConcurrencyConflict:
                        self.conflicts += 1
            written += size


class NaiveReader(threading.Thread):
    """The control: what a reader of `position > last` would have seen under the same load."""

    def __init__(self, url: str) -> None:
        super().__init__(name="naive-reader")
        self.url = url
        self.seen: list[Any] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                stopping = self.stop.is_set()
                rows = conn.execute(
                    "SELECT id, position FROM events WHERE position > %s ORDER BY position", (last,)
                ).fetchall()
                if rows:
                    last = rows[-1][1]
                    self.seen += [event_id for event_id, _ in rows]
                if stopping:
                    return


def test_subscriber_sees_every_event_once_in_order(
    pg_stores: Callable[[], EventStore], postgres_schema_url: str
) -> None:
    reader = pg_stores()
    subscription = reader.subscribe()
    total = WRITERS * PER_WRITER
    received: list[StoredEvent] = []

    def follow() -> None:
        while len(received) < total:
            batch = subscription.poll(timeout=60)
            if not batch:
                return
            received.extend(batch)

    follower = threading.Thread(target=follow)
    naive = NaiveReader(postgres_schema_url)
    writers = [Writer(pg_stores(), w) for w in range(WRITERS)]
    follower.start()
    naive.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    naive.stop.set()
    naive.join()
    follower.join(timeout=120)
    assert [w.error for w in writers] == [None] * WRITERS
    assert sum(w.conflicts for w in writers) > 0, "no optimistic append ever conflicted: the load is too light"

    ids = [event.id for event in received]
    assert len(ids) == total, f"received {len(ids)} of {total}"
    assert len(set(ids)) == total, "an event was delivered twice"
    cursors = [Cursor.parse(event.cursor) for event in received]
    assert all(a < b for a, b in itertools.pairwise(cursors)), "delivered out of cursor order"
    last: dict[str, int] = {}
    for event in received:
        assert event.stream_position == last.get(event.stream, 0) + 1, f"{event.stream} out of order"
        last[event.stream] = event.stream_position
    for w in range(WRITERS):
        assert sorted(e.data["n"] for e in received if e.data["w"] == w) == list(range(PER_WRITER))

    assert list(reader.iter_all(batch=5_000)) == received
    assert reader.verify().intact

    # The control: under this load positions were handed out in an order other than the one
    # transactions committed in, so ordering by position alone would have been wrong...
    positions = [event.position for event in received]
    assert any(a > b for a, b in itertools.pairwise(positions)), "position order equals cursor order: vacuous"
    # ...and the naive reader, which saw every event eventually appear, missed some for good.
    assert set(naive.seen) <= set(ids)
    assert len(naive.seen) < total, "the naive position reader missed nothing: the load proves nothing"


def test_an_open_write_transaction_stalls_the_feed_but_never_skips(
    pg_stores: Callable[[], EventStore], postgres_schema_url: str
) -> None:
    store = pg_stores()
    subscription = store.subscribe()
    assert subscription.poll(timeout=0.01) == []
    url = make_url(postgres_schema_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    try:
        late_events = [ev("late", n=1), ev("late", n=2)]
        with engine.connect() as other:
            transaction = other.begin()
            insert_behind_the_store(other, "late", late_events)  # holds an older xid, uncommitted
            (ours,) = store.append("s", [ev("ours")])
            assert subscription.poll(timeout=0.3) == [], "visible before the older transaction ended"
            assert store.read_all() == [] and store.head() == "0.0"
            transaction.commit()
        delivered: list[StoredEvent] = []
        while len(delivered) < 3:
            batch = subscription.poll(timeout=30)
            assert batch, "the feed never moved past the finished transaction"
            delivered += batch
        assert [e.id for e in delivered] == [e.id for e in late_events] + [ours.id]
        # They hold lower positions but committed later: a `position > last` reader that had seen
        # ours would have skipped them for good.
        assert delivered[1].position < ours.position
        assert store.verify().intact
    finally:
        engine.dispose()


def test_a_rolled_back_transaction_releases_the_feed(pg_stores: Callable[[], EventStore], postgres_schema_url: str) -> None:
    store = pg_stores()
    subscription = store.subscribe()
    with psycopg.connect(postgres_schema_url) as other:
        other.execute("SELECT pg_current_xact_id()")  # an open transaction that holds an xid
        (appended,) = store.append("s", [ev()])
        assert subscription.poll(timeout=0.3) == []
        other.rollback()
    assert subscription.poll(timeout=30) == [appended]
