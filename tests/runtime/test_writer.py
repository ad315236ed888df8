"""The batching writer: any sink, stream order kept, flush commits, failures surface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ledgerflow.events import EventStore, NewEvent, StoredEvent, StoreUnavailable, StreamAppend
from ledgerflow.runtime import flow, get_run_context, task
from ledgerflow.runtime.config import current
from ledgerflow.runtime.writer import EventWriter


def _event(n: int) -> NewEvent:
    return NewEvent(type="test.happened", data={"n": n})


class RecordingSink:
    """A sink that is not a store: keeps batches, can be told to fail."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.batches: list[list[StreamAppend]] = []
        self.failures = failures or []
        self.arrived = threading.Event()

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        if self.failures:
            raise self.failures.pop(0)
        self.batches.append(list(appends))
        self.arrived.set()
        return []


@pytest.fixture
def slow_writer(runs: EventStore) -> Iterator[EventWriter]:
    """The runtime's writer swapped for one whose timer never fires during a test."""
    runtime = current()
    runtime.writer.flush()
    real, runtime.writer = runtime.writer, EventWriter(runs, interval=3600)
    try:
        yield runtime.writer
    finally:
        runtime.writer.close()
        runtime.writer = real


def test_any_object_with_append_streams_is_a_sink() -> None:
    sink = RecordingSink()
    writer = EventWriter(sink, interval=3600)
    for n in range(5):
        writer.emit("a", _event(n))
        writer.emit("b", _event(n))
    writer.flush()
    ((first, second),) = sink.batches
    assert (first.stream, second.stream) == ("a", "b")
    assert [e.data["n"] for e in first.events] == list(range(5))  # emission order within a stream
    writer.close()


def test_a_full_batch_is_written_without_waiting_for_the_timer() -> None:
    sink = RecordingSink()
    writer = EventWriter(sink, interval=3600, max_batch=10)
    for n in range(10):
        writer.emit("a", _event(n))
    assert sink.arrived.wait(30)
    writer.close()
    assert sum(len(a.events) for batch in sink.batches for a in batch) == 10


def test_unavailable_store_is_retried_and_other_errors_reach_the_next_flush() -> None:
    sink = RecordingSink([StoreUnavailable("blip"), StoreUnavailable("blip")])
    writer = EventWriter(sink, interval=3600)
    writer.emit("a", _event(1))
    writer.flush()
    assert len(sink.batches) == 1
    sink.failures.append(ValueError("the sink refused"))
    writer.emit("a", _event(2))
    with pytest.raises(ValueError, match="refused"):
        writer.flush()
    writer.close()


@task
def breaks() -> None:
    raise RuntimeError("broken")


def test_a_failed_task_run_is_written_before_the_flow_ends(runs: EventStore, slow_writer: EventWriter) -> None:
    seen: list[str] = []

    @flow
    def watched() -> None:
        breaks(return_state=True)
        stream = f"flow-run-{get_run_context().flow_run.id}"
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:  # the timer is an hour: only a nudge writes
            seen.extend(e.type for e in runs.read_stream(stream) if e.type == "task-run.Failed")
            time.sleep(0.005)

    watched()
    assert seen == ["task-run.Failed"]


class ResultCheckingSink:
    """Wraps the store; at each append, every result file its events name must already exist."""

    def __init__(self, store: EventStore, root: Path) -> None:
        self.store, self.root, self.checked = store, root, 0

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        for append in appends:
            for event in append.events:
                result = event.data.get("result") or {}
                if result.get("key") and not result.get("inline"):
                    key = result["key"]
                    assert (self.root / key).is_file(), f"{event.type} names {key} before it is written"
                    self.checked += 1
        return self.store.append_streams(appends)


@task
def square(i: int) -> list[int]:
    return [i] * 300  # past the inline limit: each result is a file


@flow
def many_results(n: int) -> None:
    for i in range(n):
        square(i)


def test_events_are_committed_only_after_the_results_they_name(runs: EventStore) -> None:
    writer, results = current().writer, current().results
    checking = ResultCheckingSink(runs, results.root)
    real, writer.sink = writer.sink, checking
    try:
        many_results(300)
    finally:
        writer.sink = real
    assert checking.checked == 300  # every task run; the flow run's None travels inline
