"""The event writer: runs emit events without waiting; a background thread appends them in
batches. `flush()` returns once everything emitted before it is committed.

Writes are serialised by one lock (held while a batch is taken and appended), so a stream's
events reach the log in the order they were emitted.

A stream the writer `track`s (a flow run's, from its first event) is appended with the exact
version the writer expects, which costs nothing extra (the store checks the head either way).
If another writer appended to it meanwhile (a cancel, the crash monitor), the append conflicts:
the writer reads what the other wrote, hands it to the stream's resolver (the run's engine),
and appends what the resolver keeps: state changes `decide` now refuses are not written.

A writer given a `Spool` (a remote run, runtime/spool.py) does not wait for a server that
stops answering: from the first batch the sink could not take, every batch goes to the spool,
in order and with the expected versions it would have been sent with. Every
`RECONNECT_SECONDS` (at its next batch: a run's heartbeat makes one) it forwards the spool; once
the server has taken all of it, batches go to the server again, so a run that outlives an
outage is heard from (and not taken for crashed) before it ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ledgerflow.events import ANY, ConcurrencyConflict, CorruptStore, NewEvent, StoredEvent, StoreUnavailable, StreamAppend
from ledgerflow.runtime.eventlog import EventSink
from ledgerflow.runtime.spool import Spool

__all__ = ["RECONNECT_SECONDS", "EventWriter", "Resolver"]

_log = logging.getLogger("ledgerflow.runs")
_RETRIES = 8
_CONFLICTS = 50
RECONNECT_SECONDS = 5.0

Resolver = Callable[[list[StoredEvent], list[NewEvent]], list[NewEvent]]
"""(events others appended, our pending events) -> the pending events still to append."""


class EventWriter:
    def __init__(
        self,
        sink: EventSink,
        interval: float = 0.05,
        max_batch: int = 200,
        before_append: Callable[[], None] | None = None,
        spool: Spool | None = None,
        on_spooling: Callable[[str], None] | None = None,
    ) -> None:
        """`spool`: where batches go once the sink is unavailable; `on_spooling` is told why,
        once, when that starts."""
        self.sink = sink
        self._spool = spool
        self._on_spooling = on_spooling
        self.spooling = False
        self._reconnect_at = 0.0
        self._before_append = before_append
        self._interval = interval
        self._max_batch = max_batch
        self._pending: list[tuple[str, NewEvent]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._versions: dict[str, int] = {}
        self._resolvers: dict[str, Resolver] = {}
        self._thread = threading.Thread(target=self._run, name="ledgerflow-writer", daemon=True)
        self._thread.start()

    def track(self, stream: str, version: int, resolver: Resolver) -> None:
        """Append `stream` with exact versions from `version` on (0: it does not exist yet)."""
        with self._write_lock:
            self._versions[stream] = version
            self._resolvers[stream] = resolver

    def untrack(self, stream: str) -> None:
        """Stop expecting versions of `stream` (call after the flush that ends its run)."""
        with self._write_lock:
            self._versions.pop(stream, None)
            self._resolvers.pop(stream, None)

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
            if self.spooling and time.monotonic() >= self._reconnect_at:
                self._try_reconnecting()
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
        for _ in range(_CONFLICTS):
            appends = [StreamAppend(s, events, self._versions.get(s, ANY)) for s, events in by_stream.items() if events]
            if not appends:
                return
            if self.spooling:
                self._spool_batch(appends)
                return
            try:
                stored = self._append_with_retries(appends)
            except StoreUnavailable as unavailable:
                if self._spool is None:
                    raise
                self.start_spooling(str(unavailable))
                self._spool_batch(appends)
                return
            except ConcurrencyConflict as conflict:
                if conflict.stream not in self._versions:
                    raise
                by_stream[conflict.stream] = self._resolve(conflict.stream, by_stream[conflict.stream])
                continue
            self._advance(appends, stored)
            return
        raise StoreUnavailable(f"gave up appending after {_CONFLICTS} conflicting writes by others")

    def start_spooling(self, reason: str) -> None:
        """Send every batch from now on to the spool (the sink is unavailable)."""
        if not self.spooling and self._on_spooling is not None:
            self._on_spooling(reason)
        self.spooling = True
        self._reconnect_at = time.monotonic() + RECONNECT_SECONDS

    def _try_reconnecting(self) -> None:
        """Forward the spool; if the sink took all of it, write to the sink again."""
        assert self._spool is not None
        report = self._spool.forward(self.sink)
        if report.waiting:
            self._reconnect_at = time.monotonic() + RECONNECT_SECONDS
            return
        self.spooling = False
        _log.info("the API server answers again: %d spooled events sent, the run's events go to it again",
                  report.delivered)

    def _spool_batch(self, appends: list[StreamAppend]) -> None:
        assert self._spool is not None
        self._spool.append(appends)
        for stream, events, expected in appends:
            if stream in self._versions and isinstance(expected, int):
                self._versions[stream] = expected + len(events)

    def _append_with_retries(self, appends: list[StreamAppend]) -> list[StoredEvent]:
        if self._spool is not None:  # the sink retried briefly; the spool is better than waiting
            return self.sink.append_streams(appends)
        for attempt in range(_RETRIES):
            try:
                return self.sink.append_streams(appends)
            except StoreUnavailable as unavailable:
                if attempt == _RETRIES - 1 or isinstance(unavailable, CorruptStore):
                    raise  # a damaged database does not heal by waiting
                time.sleep(min(0.05 * 2**attempt, 2.0))  # ids make the retry safe
        raise AssertionError("unreachable")

    def _advance(self, appends: list[StreamAppend], stored: list[StoredEvent]) -> None:
        """Remember where each tracked stream is now."""
        if len(stored) != sum(len(a.events) for a in appends):
            for append in appends:  # a sink that does not say (a test double): stop expecting
                self._versions.pop(append.stream, None)
            return
        versions = self._versions
        for event in stored:
            if event.stream in versions:
                versions[event.stream] = event.stream_position

    def _resolve(self, stream: str, pending: list[NewEvent]) -> list[NewEvent]:
        """Another writer appended to `stream`: read it, let the resolver decide what stays."""
        read_stream: Any = getattr(self.sink, "read_stream", None)
        if read_stream is None:
            raise ConcurrencyConflict(stream, self._versions[stream], -1)
        foreign: list[StoredEvent] = read_stream(stream, self._versions[stream] + 1)
        mine = {event.id for event in pending}
        stored = {event.id for event in foreign}
        # Our own events may already be there (a retried append whose reply was lost).
        others = [event for event in foreign if event.id not in mine]
        kept = [event for event in pending if event.id not in stored]
        if foreign:
            self._versions[stream] = foreign[-1].stream_position
        return self._resolvers[stream](others, kept) if others else kept
