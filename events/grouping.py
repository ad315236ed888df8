"""Group commit: appends that arrive together are written in one transaction.

A server takes each `POST /api/events` on a thread of its own. When a hundred runs start at
once, a hundred small appends arrive within milliseconds; written one by one, each pays a
transaction, its round trips and the Python around them, while the others queue for the
store's connections (and the interpreter's lock). `AppendGroups.append_streams` lets one
caller, the leader, write every append waiting at that moment in one `append_streams` call,
then hand the lead to the first caller still waiting. A caller never waits for more than the
batch in flight and its own; a lone caller writes at once, as before.

Every caller gets exactly what its own `append_streams` would have given: its stored events,
or its error. The store writes a batch all or nothing, so when a combined batch is refused for
one caller's append (an expected version that does not hold, an invalid event) each append of
the batch is written again on its own, and only the one at fault gets the error. Any other
failure (the database is unreachable) is every caller's: each gets it at once, rather than one
timeout after another. Two appends to one stream never share a batch (a store refuses a stream
twice in one append): the later one waits for the next batch, which keeps their order.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.model import StoredEvent, StreamAppend
from ledgerflow.events.store import EventStore

__all__ = ["AppendGroups"]

_ONE_CALLERS_FAULT = (ConcurrencyConflict, InvalidEvent)
"""A combined batch refused for one of these is written again append by append."""


class _Waiting:
    __slots__ = ("appends", "events", "streams", "wake", "stored", "error", "leads")

    def __init__(self, appends: Sequence[StreamAppend]) -> None:
        self.appends = list(appends)
        self.events = sum(len(append.events) for append in self.appends)
        self.streams = {append.stream for append in self.appends}
        self.wake = threading.Event()
        self.stored: list[StoredEvent] | None = None
        self.error: BaseException | None = None
        self.leads = False

    @property
    def settled(self) -> bool:
        return self.stored is not None or self.error is not None

    def settle(self, store: EventStore) -> None:
        try:
            self.stored = store.append_streams(self.appends)
        except Exception as exc:  # noqa: BLE001 - the caller's own error, raised in its thread
            self.error = exc

    def outcome(self) -> list[StoredEvent]:
        if self.error is not None:
            raise self.error
        assert self.stored is not None
        return self.stored


class AppendGroups:
    """`append_streams` of `store`, with concurrent calls combined (see the module doc)."""

    def __init__(self, store: EventStore, max_events: int = 500) -> None:
        """`max_events`: a batch takes further callers only while it holds fewer events (one
        large append still goes alone)."""
        self.store = store
        self._max_events = max_events
        self._lock = threading.Lock()
        self._queue: deque[_Waiting] = deque()
        self._leading = False

    @property
    def waiting(self) -> int:
        """Callers waiting for a batch to take them."""
        return len(self._queue)

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        mine = _Waiting(appends)
        with self._lock:
            self._queue.append(mine)
            mine.leads = not self._leading
            self._leading = True
        while not mine.leads:
            mine.wake.wait()
            mine.wake.clear()
            if mine.settled:
                return mine.outcome()
        self._lead()
        return mine.outcome()

    def _lead(self) -> None:
        """Write one batch from the head of the queue (the leader's own append is its first),
        then pass the lead on."""
        with self._lock:
            batch = self._take()
        try:
            self._write(batch)
        except BaseException as exc:  # an interrupt in this thread: no caller of the batch waits forever
            for waiting in batch:
                if not waiting.settled:
                    waiting.error = exc
            raise
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.wake.set()
                else:
                    self._leading = False
            for waiting in batch:
                waiting.wake.set()

    def _take(self) -> list[_Waiting]:
        batch = [self._queue.popleft()]
        events, streams = batch[0].events, set(batch[0].streams)
        kept: deque[_Waiting] = deque()
        while self._queue and events < self._max_events:
            candidate = self._queue.popleft()
            if streams.isdisjoint(candidate.streams) and events + candidate.events <= self._max_events:
                batch.append(candidate)
                events += candidate.events
            else:
                kept.append(candidate)
            streams |= candidate.streams  # a later append to a skipped stream waits too: order holds
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _write(self, batch: list[_Waiting]) -> None:
        if len(batch) == 1:
            batch[0].settle(self.store)
            return
        try:
            stored = self.store.append_streams([append for waiting in batch for append in waiting.appends])
        except _ONE_CALLERS_FAULT:  # nothing was written: each append alone finds whose fault it was
            for waiting in batch:
                waiting.settle(self.store)
            return
        except Exception as exc:  # noqa: BLE001 - nothing was written, and it is nobody's append's fault
            for waiting in batch:
                waiting.error = exc
            return
        start = 0
        for waiting in batch:
            waiting.stored = stored[start:start + waiting.events]
            start += waiting.events
