"""Durable consumers on a real SQLite file and a real PostgreSQL schema: delivery, resuming,
type filters, both handler shapes, and two consumers of one name running at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, Uuid, func, select

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.events import checkpoints
from ledgerflow.events.consumer import Batch, Consumer, TransactionalConsumer
from ledgerflow.events.transactions import engine_of, write_transaction
from tests.contract.support import caught_up, ev

_metadata = MetaData()
handled_rows = Table(
    "handled", _metadata, Column("consumer", String(50), nullable=False), Column("id", Uuid(), nullable=False)
)


@pytest.fixture
def engine(store: EventStore) -> Iterator[Engine]:
    made = engine_of(store)
    _metadata.create_all(made)
    yield made


def append(store: EventStore, count: int, kind: str = "t", stream: str = "s") -> list[StoredEvent]:
    written = store.append(stream, [ev(kind, n=n) for n in range(count)])
    caught_up(store, written[-1].cursor)
    return written


def recorder() -> tuple[list[StoredEvent], Callable[[Batch], None]]:
    seen: list[StoredEvent] = []
    return seen, lambda batch: seen.extend(batch.events)


def insert_ids(consumer: str) -> Callable[[Connection, Batch], None]:
    def handler(conn: Connection, batch: Batch) -> None:
        if batch.events:
            conn.execute(handled_rows.insert(), [{"consumer": consumer, "id": e.id} for e in batch.events])

    return handler


def stored_ids(engine: Engine, consumer: str) -> list[UUID]:
    with engine.connect() as conn:
        return list(conn.execute(select(handled_rows.c.id).where(handled_rows.c.consumer == consumer)).scalars())


def test_catch_up_delivers_every_event_in_order_then_resumes_from_the_checkpoint(store: EventStore) -> None:
    first = append(store, 25)
    seen, handler = recorder()
    consumer = Consumer(store, "reader", handler, batch_size=7)
    assert consumer.checkpoint() == Cursor(0, 0)
    assert consumer.catch_up() == 25
    assert seen == first
    assert consumer.checkpoint() == Cursor.parse(first[-1].cursor)
    assert consumer.catch_up() == 0

    later = append(store, 4)
    again, handler = recorder()
    restarted = Consumer(store, "reader", handler, batch_size=7)  # a new process: only its checkpoint
    assert restarted.catch_up() == 4
    assert again == later
    other, handler = recorder()
    assert Consumer(store, "another", handler).catch_up() == 29  # a checkpoint per name


def test_catch_up_stops_near_a_limit_and_goes_on_later(store: EventStore) -> None:
    written = append(store, 20)
    seen, handler = recorder()
    consumer = Consumer(store, "slow", handler, batch_size=5)
    assert consumer.catch_up(limit=8) == 10  # whole batches
    assert consumer.checkpoint() == Cursor.parse(written[9].cursor)
    assert consumer.catch_up() == 10
    assert seen == written


def test_a_failed_batch_is_delivered_again(store: EventStore) -> None:
    written = append(store, 12)
    calls: list[list[StoredEvent]] = []

    def flaky(batch: Batch) -> None:
        calls.append(batch.events)
        if len(calls) == 2:
            raise RuntimeError("the webhook is down")

    consumer = Consumer(store, "flaky", flaky, batch_size=5)
    with pytest.raises(RuntimeError):
        consumer.catch_up()
    assert consumer.checkpoint() == Cursor.parse(written[4].cursor)  # after the batch that worked
    assert consumer.catch_up() == 7
    assert calls[1] == calls[2] == written[5:10]  # at least once: the failed batch came again
    assert [e for batch in calls[:2] + calls[3:] for e in batch] == written


def test_a_type_filter_skips_other_events_and_the_checkpoint_moves_past_them(
    store: EventStore, engine: Engine
) -> None:
    append(store, 3, kind="a.one")
    others = append(store, 6, kind="b.two", stream="other")
    seen, handler = recorder()
    consumer = Consumer(store, "a-only", handler, types=["a.*"], batch_size=2)
    assert consumer.catch_up() == 3
    assert {e.type for e in seen} == {"a.one"}
    assert consumer.checkpoint() == Cursor.parse(others[-1].cursor)

    batches: list[Batch] = []

    def keep(conn: Connection, batch: Batch) -> None:
        batches.append(batch)

    transactional = TransactionalConsumer(store, "a-tx", keep, types=["a.*"], start=store.head())
    more = append(store, 2, kind="b.two", stream="other")
    assert transactional.catch_up() == 0
    # Called with no events: the checkpoint moved past skipped ones, in its transaction.
    assert batches == [Batch([], Cursor.parse(more[-1].cursor))]
    assert transactional.checkpoint() == Cursor.parse(more[-1].cursor)


def _widening(types: list[str]) -> Callable[[Batch], Cursor | None]:
    """A handler that, on an `a.widen` event, starts wanting `b.*` too and stops there."""

    def handler(batch: Batch) -> Cursor | None:
        for event in batch.events:
            if event.type == "a.widen" and "b.*" not in types:
                types.append("b.*")
                return Cursor.parse(event.cursor)
        return None

    return handler


@pytest.mark.parametrize("following", [False, True], ids=["catch_up", "run"])
def test_a_handler_that_stops_short_gets_the_rest_again_with_the_types_asked_anew(
    store: EventStore, following: bool
) -> None:
    before = append(store, 2, kind="b.early", stream="other")
    widen = append(store, 1, kind="a.widen")
    after = append(store, 3, kind="b.late", stream="other")
    types = ["a.*"]
    seen: list[StoredEvent] = []
    widening = _widening(types)

    def handler(batch: Batch) -> Cursor | None:
        stopped = widening(batch)
        seen.extend(e for e in batch.events if stopped is None or Cursor.parse(e.cursor) <= stopped)
        return stopped

    consumer = Consumer(store, f"widening-{following}", handler, types=lambda: types)
    if following:
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll": 0.05})
        thread.start()
        try:
            wait_for(lambda: consumer.checkpoint() == Cursor.parse(after[-1].cursor))
        finally:
            stop.set()
            thread.join(timeout=30)
    else:
        assert consumer.catch_up() == 4
    # The b.* events before the widening were skipped under the old filter; those after it
    # were read again once the filter had changed.
    assert seen == widen + after
    assert before[0] not in seen
    assert consumer.checkpoint() == Cursor.parse(after[-1].cursor)


def test_a_handler_cannot_stop_outside_its_batch(store: EventStore) -> None:
    append(store, 2)
    consumer = Consumer(store, "backwards", lambda batch: Cursor(0, 0))
    with pytest.raises(ValueError, match="within its batch"):
        consumer.catch_up()
    assert consumer.checkpoint() == Cursor(0, 0)


def test_a_consumer_can_start_from_now_on(store: EventStore) -> None:
    append(store, 5)
    seen, handler = recorder()
    consumer = Consumer(store, "from-now", handler, start=store.head())
    assert consumer.catch_up() == 0
    later = append(store, 2)
    assert consumer.catch_up() == 2
    assert seen == later


def test_a_transactional_batch_commits_with_its_checkpoint_or_not_at_all(store: EventStore, engine: Engine) -> None:
    written = append(store, 9)
    calls = [0]
    insert = insert_ids("tx")

    def failing_second(conn: Connection, batch: Batch) -> None:
        calls[0] += 1
        insert(conn, batch)
        if calls[0] == 2:
            raise RuntimeError("crash after writing")

    consumer = TransactionalConsumer(store, "tx", failing_second, batch_size=4)
    with pytest.raises(RuntimeError):
        consumer.catch_up()
    assert stored_ids(engine, "tx") == [e.id for e in written[:4]]  # the second batch rolled back whole
    assert consumer.checkpoint() == Cursor.parse(written[3].cursor)
    assert consumer.catch_up() == 5
    assert sorted(stored_ids(engine, "tx")) == sorted(e.id for e in written)


def test_run_follows_new_events_until_stopped(store: EventStore) -> None:
    append(store, 3)
    seen: list[StoredEvent] = []
    arrived = threading.Condition()

    def handler(batch: Batch) -> None:
        with arrived:
            seen.extend(batch.events)
            arrived.notify_all()

    consumer = Consumer(store, "follower", handler)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        later = store.append("s", [ev(n=n) for n in range(4)])
        with arrived:
            assert arrived.wait_for(lambda: len(seen) == 7, timeout=60)
        assert seen[-4:] == later
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    wait_for(lambda: consumer.checkpoint() == Cursor.parse(later[-1].cursor))


def test_run_ends_when_its_store_is_closed(store_factory: Callable[[], EventStore]) -> None:
    own = store_factory()
    seen, handler = recorder()
    thread = threading.Thread(target=Consumer(own, "closing", handler).run, args=(threading.Event(),))
    thread.start()

    def following() -> bool:  # it has created its checkpoint, so it is in run()
        with engine_of(own).connect() as conn:
            return checkpoints.read(conn, "closing") is not None

    wait_for(following)
    own.close()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_consumer_runs_as_a_service(store: EventStore) -> None:
    seen, handler = recorder()
    for interval in (None, 0.01):
        service = Consumer(store, f"service-{interval}", handler).service(interval=interval)
        assert service.name == f"consumer-service-{interval}"
        service.start()
        try:
            written = store.append("s", [ev()])
            wait_for(lambda: written[0] in seen)
        finally:
            service.stop()


def test_a_checkpoint_moves_only_forward_and_only_from_where_it_stands(store: EventStore) -> None:
    engine = engine_of(store)
    a, b, c = Cursor(0, 3), Cursor(0, 5), Cursor(0, 9)
    with write_transaction(engine) as conn:
        assert checkpoints.create(conn, "cas", a) == a
        assert checkpoints.create(conn, "cas", c) == a  # it exists: it stays where it is
        assert checkpoints.advance(conn, "cas", a, b)
        assert not checkpoints.advance(conn, "cas", a, c)  # someone read a; it is at b now
        with pytest.raises(ValueError):
            checkpoints.advance(conn, "cas", b, a)
        assert checkpoints.read(conn, "cas") == b
        assert checkpoints.read(conn, "nobody") is None
        assert checkpoints.read_all(conn) == {"cas": b}


def test_two_processes_running_one_transactional_consumer_apply_each_event_exactly_once(
    store_factory: Callable[[], EventStore],
) -> None:
    writer = store_factory()
    engine = engine_of(writer)
    _metadata.create_all(engine)
    consumers = [TransactionalConsumer(store_factory(), "shared", insert_ids("shared"), batch_size=5) for _ in range(2)]
    written = race(writer, consumers, engine, "shared")
    ids = stored_ids(engine, "shared")
    assert len(ids) == len(set(ids)) == len(written)  # nothing applied twice, nothing missed
    assert set(ids) == {e.id for e in written}


def test_two_processes_running_one_effects_consumer_handle_each_event_at_least_once(
    store_factory: Callable[[], EventStore],
) -> None:
    writer = store_factory()
    engine = engine_of(writer)
    seen: list[StoredEvent] = []
    lock = threading.Lock()

    def handler(batch: Batch) -> None:
        with lock:
            seen.extend(batch.events)

    consumers = [Consumer(store_factory(), "shared-effects", handler, batch_size=5) for _ in range(2)]
    written = race(writer, consumers, engine, "shared-effects")
    assert {e.id for e in seen} == {e.id for e in written}


def race(
    writer: EventStore, consumers: list[Consumer] | list[TransactionalConsumer], engine: Engine, name: str
) -> list[StoredEvent]:
    """Append 150 events in small batches while both consumers catch up in a loop and a
    watcher samples the checkpoint, which must never go back; return what was appended."""
    written: list[StoredEvent] = []
    writing, consuming = threading.Event(), threading.Event()
    writing.set()
    consuming.set()
    errors: list[BaseException] = []
    samples: list[Cursor] = []

    def write() -> None:
        try:
            for n in range(30):
                written.extend(writer.append(f"race-{n % 3}", [ev(n=n, i=i) for i in range(5)]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            writing.clear()

    def consume(consumer: Consumer | TransactionalConsumer) -> None:
        try:
            while True:
                finished = not writing.is_set()
                consumer.catch_up()
                if finished and (not written or consumer.checkpoint() >= Cursor.parse(written[-1].cursor)):
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def watch() -> None:
        while consuming.is_set():
            with engine.connect() as conn:
                stands = checkpoints.read(conn, name)
            if stands is not None:
                samples.append(stands)
            time.sleep(0.002)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=consume, args=(c,)) for c in consumers]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    consuming.clear()
    watcher.join(timeout=60)
    assert not errors, errors
    with engine.connect() as conn:
        samples.append(checkpoints.read(conn, name) or Cursor(0, 0))
    assert samples == sorted(samples), "the checkpoint went backwards"
    assert samples[-1] == Cursor.parse(written[-1].cursor)
    return written


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
