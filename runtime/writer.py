"""The event writer: runs emit events without waiting; a background thread appends them in
batches. `flush()` returns once everything emitted before it is committed.

Writes are serialised by one lock (held while a batch is taken and appended), so a stream's
events reach the log in the order they were emitted.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from ledgerflow.events import NewEvent, StoredEvent, StoreUnavailable, StreamAppend

__all__ = ["EventSink", "EventWriter"]

_RETRIES = 8


class EventSink(Protocol):
    """Where batches go: the event store itself, or the API server over HTTP."""

    def append_streams(self, appends: list[StreamAppend]) -> list[StoredEvent]: ...


class EventWriter:
    def __init__(
        self,
        sink: EventSink,
        interval: float = 0.05,
        max_batch: int = 200,
        before_append: Callable[[], None] | None = None,
    ) -> None:
        self.sink = sink
        self._before_append = before_append
        self._interval = interval
        self._max_batch = max_batch
        self._pending: list[tuple[str, NewEvent]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ledgerflow-writer", daemon=True)
        self._thread.start()

    def emit(self, stream: str, event: NewEvent) -> None:
        with self._lock:
            self._pending.append((stream, event))
            backlog = len(self._pending)
        if backlog == self._max_batch:
            self._wake.set()
        elif backlog >= 10 * self._max_batch:
            self._write_pending()  # the store cannot keep up: write here rather than grow without bound

    def nudge(self) -> None:
        """Write soon rather than at the next tick (a failure others may be waiting to see)."""
        self._wake.set()

    def flush(self) -> None:
        """Commit everything emitted so far (in this thread, now); raise if it cannot be."""
        self._write_pending()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._write_pending()
            except BaseException as exc:  # noqa: BLE001 - kept for the next flush to raise
                self._error = exc

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            # What the events name (result files) must exist before the events are committed; if
            # it cannot be written, the events are still the record and the error is raised after.
            failure: Exception | None = None
            if self._before_append is not None:
                try:
                    self._before_append()
                except Exception as exc:  # noqa: BLE001 - raised once the events are safe
                    failure = exc
            # Appends of ~200 events cost the least per event on both stores (a huge
            # multi-row statement is re-parsed by the driver); slices go in order, so each
            # stream's events still reach the log in the order they were emitted.
            for start in range(0, len(batch), self._max_batch):
                self._append(batch[start:start + self._max_batch])
            if failure is not None:
                raise failure

    def _append(self, batch: list[tuple[str, NewEvent]]) -> None:
        by_stream: dict[str, list[NewEvent]] = defaultdict(list)
        for stream, event in batch:
            by_stream[stream].append(event)
        appends = [StreamAppend(stream, events) for stream, events in by_stream.items()]
        for attempt in range(_RETRIES):
            try:
                self.sink.append_streams(appends)
                return
            except StoreUnavailable:
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))  # ids make the retry safe
