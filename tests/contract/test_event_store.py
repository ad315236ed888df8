"""The event store's contract, run against a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import gc
import math
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledgerflow.events import (
    ANY,
    NO_STREAM,
    ConcurrencyConflict,
    Cursor,
    EventMeta,
    EventStore,
    EventTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidStreamName,
    NewEvent,
    PayloadNotSerializable,
    StoredEvent,
    StoreUnavailable,
    StreamAppend,
    open_store,
)
from ledgerflow.events.codec import MAX_EVENT_BYTES
from tests.contract.support import caught_up, ev


def everything(store: EventStore, written: list[StoredEvent]) -> list[StoredEvent]:
    """The whole feed, once it shows the last of `written`."""
    caught_up(store, written[-1].cursor)
    return list(store.iter_all())


def test_append_then_read_back(store: EventStore) -> None:
    assert store.head() == "0.0" and store.read_all() == []
    written = store.append("s-1", [ev("a.one", n=1), ev("a.two", n=2)], NO_STREAM)
    assert [e.stream_position for e in written] == [1, 2]
    assert written[0].position < written[1].position
    read = store.read_stream("s-1")
    assert read == written
    assert read[1].data == {"n": 2}
    assert read[0].recorded.tzinfo is not None
    assert everything(store, written) == written
    assert store.head() == written[-1].cursor
    assert store.read_stream("s-1", from_version=2) == written[1:]
    assert store.read_stream("s-1", limit=1) == written[:1]
    assert store.read_stream("other") == []


def test_expected_versions(store: EventStore) -> None:
    store.append("s", [ev()], NO_STREAM)
    store.append("s", [ev()], 1)
    store.append("s", [ev()], ANY)
    with pytest.raises(ConcurrencyConflict) as conflict:
        store.append("s", [ev(), ev()], 2)
    assert (conflict.value.stream, conflict.value.expected, conflict.value.actual) == ("s", 2, 3)
    with pytest.raises(ConcurrencyConflict):
        store.append("s", [ev()], NO_STREAM)
    with pytest.raises(ConcurrencyConflict):
        store.append("s", [ev()], 4)
    with pytest.raises(ConcurrencyConflict):
        store.append("new", [ev()], 1)
    assert [e.stream_position for e in store.read_stream("s")] == [1, 2, 3]
    assert store.read_stream("new") == []
    assert store.append("s", [ev()], 3)[0].stream_position == 4


def test_conflict_seen_by_a_second_store_writes_nothing(store_factory: Callable[[], EventStore]) -> None:
    first, second = store_factory(), store_factory()
    first.append("s", [ev()])
    second.append("s", [ev()])  # first's idea of the stream's head is now stale
    with pytest.raises(ConcurrencyConflict):
        first.append("s", [ev()], 1)
    assert len(second.read_stream("s")) == 2
    assert first.append("s", [ev()], ANY)[0].stream_position == 3
    assert first.append("s", [ev()], 3)[0].stream_position == 4
    assert second.verify().intact


def test_two_writers_expecting_the_same_version_one_wins(store_factory: Callable[[], EventStore]) -> None:
    stores = [store_factory() for _ in range(4)]
    stores[0].append("s", [ev()])
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def write(store: EventStore) -> None:
        start.wait()
        try:
            store.append("s", [ev()], 1)
            outcomes.append("ok")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
    assert [e.stream_position for e in stores[0].read_stream("s")] == [1, 2]


def test_multi_stream_append_is_atomic(store: EventStore) -> None:
    store.append("b", [ev()])
    with pytest.raises(ConcurrencyConflict):
        store.append_streams([StreamAppend("a", [ev(), ev()]), StreamAppend("b", [ev()], NO_STREAM)])
    assert store.read_stream("a") == []
    assert len(store.read_stream("b")) == 1
    written = store.append_streams(
        [StreamAppend("a", [ev(), ev()], NO_STREAM), StreamAppend("b", [ev()], 1), StreamAppend("c", [ev()])]
    )
    assert [(e.stream, e.stream_position) for e in written] == [("a", 1), ("a", 2), ("b", 2), ("c", 1)]
    assert [e.position for e in written] == sorted(e.position for e in written)
    assert store.read_stream("a") == written[:2]
    assert store.append_streams([]) == []


def test_retried_append_returns_the_stored_events(store: EventStore) -> None:
    batch = [ev(n=1), ev(n=2)]
    first = store.append("s", batch, NO_STREAM)
    again = store.append("s", batch, NO_STREAM)  # a retry after a lost reply
    assert again == first
    assert store.append("s", batch, ANY) == first
    mixed = store.append("s", [batch[0], ev(n=3)])
    assert mixed[0] == first[0]
    assert mixed[1].stream_position == 3
    assert len(store.read_stream("s")) == 3


def test_retry_with_the_original_exact_version(store_factory: Callable[[], EventStore]) -> None:
    writer, other = store_factory(), store_factory()
    writer.append("s", [ev()])
    batch = [ev(n=1), ev(n=2)]
    first = writer.append("s", batch, 1)
    writer.append("s", [ev(n=3)], 3)  # the stream moved on since
    assert writer.append("s", batch, 1) == first
    assert other.append("s", batch, 1) == first  # the retry may come from another process
    multi = [StreamAppend("s", batch, 1), StreamAppend("t", [ev()], NO_STREAM)]
    with pytest.raises(ConcurrencyConflict):  # t's event is new, so s's version counts
        other.append_streams(multi)
    assert other.read_stream("t") == []
    assert [e.data.get("n") for e in writer.read_stream("s")] == [None, 1, 2, 3]


def test_a_stored_id_is_returned_not_rewritten_even_in_another_batch(store: EventStore) -> None:
    event = ev(n=1)
    (stored,) = store.append("s", [event])
    again = store.append_streams([StreamAppend("t", [ev(n=2)]), StreamAppend("s", [event], 1)])
    assert again[1] == stored
    assert again[0].stream == "t"
    assert len(store.read_stream("s")) == 1
    assert store.verify().intact


BAD_INPUT = [
    pytest.param([StreamAppend("bad name", [ev()])], InvalidStreamName, id="space-in-stream"),
    pytest.param([StreamAppend("", [ev()])], InvalidStreamName, id="empty-stream"),
    pytest.param([StreamAppend("x" * 201, [ev()])], InvalidStreamName, id="long-stream"),
    pytest.param([StreamAppend("s", [ev(x=object())])], PayloadNotSerializable, id="object"),
    pytest.param([StreamAppend("s", [ev(x={1, 2})])], PayloadNotSerializable, id="set"),
    pytest.param([StreamAppend("s", [ev(x=b"bytes")])], PayloadNotSerializable, id="bytes"),
    pytest.param([StreamAppend("s", [ev(x={1: "int key"})])], PayloadNotSerializable, id="nested-int-key"),
    pytest.param([StreamAppend("s", [ev(x="\ud800")])], PayloadNotSerializable, id="lone-surrogate"),
    pytest.param([StreamAppend("s", [ev(n=2**64)])], PayloadNotSerializable, id="huge-int"),
    pytest.param([StreamAppend("s", [ev(n=-(2**63) - 1)])], PayloadNotSerializable, id="huge-negative-int"),
    pytest.param([StreamAppend("s", [ev(blob="x" * MAX_EVENT_BYTES)])], EventTooLarge, id="oversize"),
    pytest.param([StreamAppend("s", [ev()]), StreamAppend("s", [ev()])], InvalidEvent, id="stream-twice"),
    pytest.param([StreamAppend("s", [ev()], -1)], InvalidEvent, id="negative-version"),
    pytest.param([StreamAppend("s", [ev()], True)], InvalidEvent, id="bool-version"),
    pytest.param([StreamAppend("s", [ev()], "sometimes")], InvalidEvent, id="word-version"),
    pytest.param([StreamAppend("s", [{"type": "t"}])], InvalidEvent, id="not-a-new-event"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("appends", "error"), BAD_INPUT)
def test_bad_input_is_refused_whole(store: EventStore, appends: list[StreamAppend], error: type[Exception]) -> None:
    good = StreamAppend("good", [ev(), ev()])
    later_good = StreamAppend("good-too", [ev()])
    with pytest.raises(error) as refused:
        store.append_streams([good, *appends, later_good])
    assert str(refused.value)
    assert store.read_stream("good") == [] and store.read_stream("good-too") == []
    assert store.read_stream("s") == []
    assert store.head() == "0.0"
    assert store.append("good", [ev()], NO_STREAM)[0].stream_position == 1  # no head was left behind


def test_the_same_id_twice_in_one_batch_is_refused(store: EventStore) -> None:
    event = ev()
    with pytest.raises(InvalidEvent, match="twice"):
        store.append("s", [event, event])
    with pytest.raises(InvalidEvent, match="twice"):
        store.append_streams([StreamAppend("a", [event]), StreamAppend("b", [event])])
    assert store.read_stream("s") == store.read_stream("a") == store.read_stream("b") == []


def test_size_limit_boundary(store: EventStore) -> None:
    overhead = len('{"blob":""}') + len("{}")
    (stored,) = store.append("s", [ev(blob="x" * (MAX_EVENT_BYTES - overhead))])
    assert len(store.read_stream("s")[0].data["blob"]) == MAX_EVENT_BYTES - overhead
    with pytest.raises(EventTooLarge):
        store.append("s", [ev(blob="x" * (MAX_EVENT_BYTES - overhead + 1))])
    assert store.read_stream("s") == [stored]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(store: EventStore, value: float) -> None:
    with pytest.raises(PayloadNotSerializable):
        store.append("s", [ev(x=value)])
    assert store.read_stream("s") == []


def test_append_returns_what_a_read_returns(store: EventStore) -> None:
    data = {"when": datetime(2026, 1, 1, tzinfo=UTC), "id": uuid.uuid4(), "pair": (1, 2)}
    (stored,) = store.append("s", [NewEvent(type="t", data=data)])
    assert store.read_stream("s") == [stored]


def test_read_all_pages_and_filters(store: EventStore) -> None:
    kinds = ["task-run.Running", "task-run.Completed", "flow-run.Running", "log.emitted", "task_run.x"]
    written = [store.append(f"s{i % 3}", [ev(kind)])[0] for i, kind in enumerate(kinds * 3)]
    caught_up(store, written[-1].cursor)
    page1 = store.read_all(limit=4)
    page2 = store.read_all(after=page1[-1].cursor, limit=100)
    assert page1 + page2 == written
    assert store.read_all(after=Cursor.parse(page1[-1].cursor), limit=100) == page2
    assert store.read_all(after=written[-1].cursor) == []
    assert {e.type for e in store.read_all(types=["task-run.*"])} == {"task-run.Running", "task-run.Completed"}
    assert {e.type for e in store.read_all(types=["*.Running"])} == {"task-run.Running", "flow-run.Running"}
    assert {e.type for e in store.read_all(types=["log.emitted", "flow-run.*"])} == {"log.emitted", "flow-run.Running"}
    assert [e.type for e in store.read_all(types=["task_run.*"])] == ["task_run.x"] * 3  # '_' is literal
    assert store.read_all(types=["task%"]) == []  # '%' is literal too
    assert store.read_all(types=["*"]) == written
    assert store.read_all(types=["nothing.*"]) == []
    filtered = store.read_all(types=["task-run.*"], limit=2)
    assert store.read_all(after=filtered[-1].cursor, types=["task-run.*"]) == [
        e for e in written if e.type.startswith("task-run.")
    ][2:]
    assert store.read_last(2) == written[-2:]
    assert [e.type for e in store.read_last(2, types=["log.*"])] == ["log.emitted", "log.emitted"]
    assert list(store.iter_all(batch=4)) == written
    assert list(store.iter_all(after=written[9].cursor, batch=2, types=["*.Running"])) == [
        e for e in written[10:] if e.type.endswith(".Running")
    ]


def test_type_patterns_are_case_sensitive(
    store: EventStore, store_url: str, request: pytest.FixtureRequest
) -> None:
    written = store.append("s", [ev("task-run.Failed"), ev("Task-Run.Failed"), ev("x.FAILED")])
    caught_up(store, written[-1].cursor)
    assert [e.type for e in store.read_all(types=["task-run.*"])] == ["task-run.Failed"]
    assert [e.type for e in store.read_all(types=["*.Failed"])] == ["task-run.Failed", "Task-Run.Failed"]
    assert [e.type for e in store.subscribe(types=["*.Failed"]).poll(timeout=5)] == [
        "task-run.Failed",
        "Task-Run.Failed",
    ]


@pytest.mark.parametrize("cursor", ["", "abc", "1", "1.x", "-1.2", "1.2.3", "١.٢", "1 .2", "0x1.2"])
def test_bad_cursors_are_refused(store: EventStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        store.read_all(after=cursor)
    with pytest.raises(InvalidCursor):
        store.subscribe(after=cursor)


@pytest.mark.parametrize("cursor", ["1.99999999999999999999", "99999999999999999999.1"])
def test_out_of_range_cursors_are_refused(store: EventStore, cursor: str) -> None:
    store.append("s", [ev()])
    with pytest.raises(InvalidCursor):
        store.read_all(after=cursor)


def test_stored_events_keep_the_writers_clock_and_meta(store: EventStore) -> None:
    occurred = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = NewEvent(type="t", occurred=occurred, meta=EventMeta(actor="ci", correlation_id=uuid.uuid4()))
    (stored,) = store.append("s", [event])
    (read,) = store.read_stream("s")
    assert read.occurred == occurred
    assert read.meta == event.meta
    assert read.id == event.id
    assert read == stored


def test_subscription_catches_up_then_follows(store_factory: Callable[[], EventStore]) -> None:
    writer, reader = store_factory(), store_factory()
    early = writer.append("s", [ev(n=0)])
    subscription = reader.subscribe()
    assert subscription.poll(timeout=30) == early
    assert subscription.poll(timeout=0.05) == []

    later: list[list[StoredEvent]] = []
    thread = threading.Thread(target=lambda: later.append(writer.append("s", [ev(n=1), ev(n=2)])))
    received: list[StoredEvent] = []
    thread.start()
    while len(received) < 2:
        batch = subscription.poll(timeout=30)
        assert batch, "a live append from another store was not delivered"
        received += batch
    thread.join()
    assert received == later[0]
    own = reader.append("t", [ev(n=3)])
    assert subscription.poll(timeout=30) == own
    assert Cursor.parse(subscription.cursor) == Cursor.parse(own[-1].cursor)
    subscription.close()
    assert subscription.poll(timeout=0.05) == []


def test_iterating_a_subscription_wakes_on_an_append_by_the_same_store(store: EventStore) -> None:
    subscription = store.subscribe()
    received: list[StoredEvent] = []

    def follow() -> None:
        for event in subscription:
            received.append(event)
            if len(received) == 3:
                return

    follower = threading.Thread(target=follow)
    follower.start()
    written = store.append("s", [ev(n=1)]) + store.append("s", [ev(n=2), ev(n=3)])
    follower.join(timeout=30)
    assert not follower.is_alive()
    assert received == written


def test_subscription_filters_types_and_resumes_from_its_cursor(store: EventStore) -> None:
    store.append("s", [ev("task-run.Running"), ev("log.emitted"), ev("task-run.Completed")])
    subscription = store.subscribe(types=["task-run.*"])
    first = subscription.poll(timeout=30)
    assert [e.type for e in first] == ["task-run.Running", "task-run.Completed"]
    store.append("s", [ev("log.emitted"), ev("task-run.Failed")])
    resumed = store.subscribe(after=subscription.cursor, types=["task-run.*"])
    assert [e.type for e in resumed.poll(timeout=30)] == ["task-run.Failed"]
    iterator = iter(store.subscribe(after=first[0].cursor))
    assert next(iterator).type == "log.emitted"


def test_filtered_reads_move_their_cursor_past_skipped_events(store: EventStore) -> None:
    written = store.append("s", [ev("task-run.Running"), *(ev("bench.tick") for _ in range(5))])
    caught_up(store, written[-1].cursor)
    page = store.read_page(types=["task-run.*"], limit=10)
    assert page.events == written[:1] and page.next_after == written[-1].cursor
    full = store.read_page(types=["bench.*"], limit=2)
    assert full.events == written[1:3] and full.next_after == written[2].cursor
    assert store.read_page(after=written[-1].cursor, types=["task-run.*"]) == ([], written[-1].cursor)
    subscription = store.subscribe(types=["task-run.*"])
    assert subscription.poll(timeout=30) == written[:1]
    assert str(subscription.cursor) == written[-1].cursor
    more = store.append("s", [ev("bench.tick"), ev("task-run.Completed"), ev("bench.tick")])
    caught_up(store, more[-1].cursor)
    assert subscription.poll(timeout=30) == more[1:2]
    assert subscription.poll(timeout=0) == [] and str(subscription.cursor) == more[-1].cursor


def test_subscriptions_resume_exactly_where_a_read_stopped(store: EventStore) -> None:
    written = store.append("s", [ev(n=n) for n in range(10)])
    caught_up(store, written[-1].cursor)
    page = store.read_all(limit=4)
    subscription = store.subscribe(after=page[-1].cursor, batch_size=3)
    received: list[StoredEvent] = []
    while batch := subscription.poll(timeout=0):
        assert len(batch) <= 3
        received += batch
    assert page + received == written


def test_verify_intact_log(store: EventStore) -> None:
    for i in range(10):
        store.append(f"s{i % 3}", [ev(n=i), ev(n=-i)])
    report = store.verify()
    assert report.intact
    assert (report.events_checked, report.streams_checked) == (20, 3)


def test_a_stream_without_events_guards_its_version(store: EventStore) -> None:
    store.append("guarded", [ev()])
    with pytest.raises(ConcurrencyConflict):
        store.append_streams([StreamAppend("other", [ev()]), StreamAppend("guarded", [], 0)])
    assert store.read_stream("other") == []
    written = store.append_streams([StreamAppend("other", [ev()]), StreamAppend("guarded", [], 1)])
    assert [e.stream for e in written] == ["other"]
    with pytest.raises(ConcurrencyConflict):
        store.append("guarded", [], NO_STREAM)
    assert store.append("missing", [], NO_STREAM) == []
    assert store.verify().intact


def test_closing_the_store_releases_a_waiting_subscriber(store_factory: Callable[[], EventStore]) -> None:
    store = store_factory()
    subscription = store.subscribe()
    result: list[list[StoredEvent]] = []
    waiter = threading.Thread(target=lambda: result.append(subscription.poll(timeout=None)), daemon=True)
    waiter.start()
    store.close()
    waiter.join(timeout=5)
    released = not waiter.is_alive()
    subscription.close()  # stop a waiter the store failed to release before the schema goes
    waiter.join(timeout=30)
    store.engine.dispose()  # type: ignore[attr-defined]  # and the connections it reopened
    gc.collect()  # so that any connection it leaked is reported here, not in a later test
    assert released and result == [[]]


@pytest.mark.parametrize(
    "occurred",
    [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
    ids=["year-1", "just-before-the-epoch", "year-9999"],
)
@pytest.mark.parametrize("count", [1, 3], ids=["single", "batch"])
def test_extreme_clocks_round_trip_and_verify(store: EventStore, occurred: datetime, count: int) -> None:
    stored = store.append("s", [NewEvent(type="t", occurred=occurred) for _ in range(count)])
    assert store.read_stream("s") == stored
    assert all(event.occurred == occurred for event in stored)
    assert store.verify().intact


@pytest.mark.parametrize("count", [1, 3], ids=["single", "batch"])
def test_awkward_strings_round_trip_and_verify(store: EventStore, count: int) -> None:
    # Single events and batches take different statements (and parameter formats) on PostgreSQL.
    data = {"nul": "a\x00b", "control": "\x1f\x7f", "emoji": "🙂", "rtl": "שלום", "\x00key": 1,
            "quote": '"\\', "array-ish": '{"a","b"},NULL'}
    actor = "\x00me🙂"
    stored = store.append("s", [NewEvent(type="t", data=data, meta=EventMeta(actor=actor)) for _ in range(count)])
    assert store.read_stream("s") == stored
    assert all(event.data == data and event.meta.actor == actor for event in stored)
    assert store.verify().intact


def test_an_unusable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{tmp_path / 'a-file' / 'ledgerflow.db'}")


def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 100)
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{garbage}")


def test_an_unreachable_or_unknown_database_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        open_store("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=5")
    with pytest.raises(StoreUnavailable, match="unsupported") as unknown:
        open_store("mysql://user:secret@host/db")
    assert "secret" not in str(unknown.value)


def test_threads_sharing_one_store_lose_nothing(store: EventStore) -> None:
    """The runtime appends from many threads through one store (and one head cache)."""
    per_thread, threads = 60, 4
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            for n in range(per_thread):
                batch = [ev(w=number, n=n)] if n % 3 else [ev(w=number, n=n, part=p) for p in range(3)]
                if n % 4 == 0:
                    while True:  # optimistic: expect the version just read
                        version = len(store.read_stream("shared"))
                        try:
                            store.append("shared", batch, version)
                            break
                        except ConcurrencyConflict:
                            continue
                else:
                    store.append_streams([StreamAppend("shared", batch), StreamAppend(f"own-{number}", [ev(n=n)])])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    shared = store.read_stream("shared")
    assert [e.stream_position for e in shared] == list(range(1, len(shared) + 1))
    assert len(shared) == threads * (per_thread + 2 * len(range(0, per_thread, 3)))
    for w in range(threads):
        assert sorted({e.data["n"] for e in shared if e.data["w"] == w}) == list(range(per_thread))
        assert len(store.read_stream(f"own-{w}")) == per_thread - len(range(0, per_thread, 4))
    assert store.verify().intact


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_subscription_needs_a_positive_batch_size(store: EventStore, batch_size: int) -> None:
    store.append("s", [ev()])
    with pytest.raises(InvalidEvent, match="at least 1"):
        store.subscribe(batch_size=batch_size).poll(timeout=0.05)
