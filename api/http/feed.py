"""Live event feeds for SSE and WebSocket clients, one shared tail reader per process.

A background thread follows the log (the store's subscription: in-process wake-ups, NOTIFY
from other server processes, polling as the fallback) into a bounded window of the newest
events, and wakes the async clients. Each client keeps only its own cursor: it takes events
after it from the window when the window still covers it, and otherwise reads the log itself
(in a worker thread) until it is back inside the window. So a slow client costs the server
one cursor, not a queue: memory is bounded by the window size whatever the clients do, and
the socket's own flow control (uvicorn waits for the transport to drain) paces each sender.

Nothing is lost or repeated: the client's cursor only moves past events it was handed or that
its filter rejected, and a resumed client starts after the last cursor it received.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import anyio
import orjson
from anyio import to_thread

from ledgerflow.api.http.schemas import event_json
from ledgerflow.events import Cursor, EventStore, StoredEvent, Subscription
from ledgerflow.events.typefilter import TypePatterns

__all__ = ["FeedFilter", "FeedHub", "Item"]


class Item(NamedTuple):
    """What a feed keeps of an event: enough to filter it, and its JSON wire form."""

    cursor: str
    type: str
    stream: str
    json: bytes


def _item(event: StoredEvent) -> Item:
    # orjson over-allocates its output (8 KB for 1 KB of JSON): copy it to its exact size.
    return Item(event.cursor, event.type, event.stream, memoryview(orjson.dumps(event_json(event))).tobytes())


_WINDOW = 20_000
_WINDOW_BYTES = 32 * 1024 * 1024
_PAGE = 500
_NAMES = 10_000
_FLOW_RUN = "flow-run-"


@dataclass(frozen=True)
class FeedFilter:
    type_names: tuple[str, ...] = ()
    """Event types or `*` patterns; empty: every type."""
    flow_run_ids: frozenset[str] = frozenset()
    flow_names: frozenset[str] = frozenset()
    types: TypePatterns = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", TypePatterns.parse(list(self.type_names)))

    @classmethod
    def of(
        cls, types: Sequence[str] | None = None, flow_run_ids: Sequence[str] | None = None,
        flow_names: Sequence[str] | None = None,
    ) -> FeedFilter:
        return cls(tuple(types or ()), frozenset(flow_run_ids or ()), frozenset(flow_names or ()))


class FeedHub:
    """The process's tail reader, a `Service`: `start()` runs it on a thread of its own, which
    wakes the async clients on `loop`; `stop()` ends it."""

    name = "feed"

    def __init__(
        self, store: EventStore, loop: asyncio.AbstractEventLoop, window: int = _WINDOW, max_bytes: int = _WINDOW_BYTES
    ) -> None:
        self.store = store
        self._window = window
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: list[Item] = []
        """The window, each event encoded once for every client."""
        self._cursors: list[Cursor] = []
        self._bytes = 0
        self._listening = threading.Event()
        self._start = Cursor.parse(store.head())
        """Every event after this cursor is in the window (or not yet read by the tail)."""
        self._names: OrderedDict[str, str | None] = OrderedDict()
        self._loop = loop
        self._changed = asyncio.Event()  # binds to the loop that first waits on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.clients = 0

    # -- the tail thread -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._tail, name="ledgerflow-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._listening.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _tail(self) -> None:
        # Read the log only while someone listens: an ingest-only server pays nothing for feeds.
        subscription: Subscription | None = None
        while not self._stop.is_set():
            if self.clients == 0:
                if subscription is not None:
                    subscription.close()
                    subscription = None
                self._listening.wait(0.25)
                self._listening.clear()
                continue
            if subscription is None:
                subscription = self._restart()
            batch = subscription.poll(timeout=0.25)
            if batch:
                self._add(batch)
        if subscription is not None:
            subscription.close()

    def _restart(self) -> Subscription:
        """Start the window afresh at the log's head: clients behind it read the log."""
        head = Cursor.parse(self.store.head())
        with self._lock:
            self._start = head
            self._items.clear()
            self._cursors.clear()
            self._bytes = 0
        self._notify()
        return self.store.subscribe(after=head, batch_size=2000)

    def _add(self, batch: list[StoredEvent]) -> None:
        items = [_item(e) for e in batch]
        with self._lock:
            self._items.extend(items)
            self._cursors.extend(Cursor.parse(e.cursor) for e in batch)
            self._bytes += sum(len(i.json) for i in items)
            for event in batch:
                if event.type == "flow-run.created":
                    self._remember(event.stream, event.data.get("flow_name"))
            if len(self._items) > self._window + self._window // 4 or self._bytes > self._max_bytes:
                self._trim()
        self._notify()

    def _trim(self) -> None:
        """Drop the oldest events down to 3/4 of the limits (in chunks: slicing is O(window))."""
        keep, keep_bytes = self._window * 3 // 4, self._max_bytes * 3 // 4
        drop, size = 0, self._bytes
        while drop < len(self._items) and (len(self._items) - drop > keep or size > keep_bytes):
            size -= len(self._items[drop].json)
            drop += 1
        if drop:
            self._start = self._cursors[drop - 1]
            del self._items[:drop], self._cursors[:drop]
            self._bytes = size

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed while we were reading
            pass

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- clients ---------------------------------------------------------------------------

    def _from_window(self, cursor: Cursor, limit: int) -> tuple[list[Item], Cursor] | None:
        """Events after `cursor` and the cursor read up to; None when the window starts later."""
        with self._lock:
            if cursor < self._start:
                return None
            index = bisect.bisect_right(self._cursors, cursor)
            items = self._items[index : index + limit]
            return items, (self._cursors[index + len(items) - 1] if items else cursor)

    async def _from_log(self, cursor: Cursor, feed: FeedFilter) -> tuple[list[Item], Cursor]:
        start = self._start  # everything up to here was visible before this read began
        types = list(feed.type_names) or None
        events = await to_thread.run_sync(lambda: self.store.read_all(cursor, _PAGE, types))
        items = [_item(e) for e in events]
        if len(events) == _PAGE:
            return items, Cursor.parse(events[-1].cursor)
        last = Cursor.parse(events[-1].cursor) if events else cursor
        return items, max(last, start)

    async def follow(self, after: Cursor, feed: FeedFilter, heartbeat: float) -> AsyncIterator[list[Item]]:
        """Batches of matching events after `after`, forever; an empty batch is a heartbeat."""
        cursor = after
        quiet_since = anyio.current_time()
        self.clients += 1
        self._listening.set()
        try:
            while True:
                changed = self._changed
                window = self._from_window(cursor, _PAGE)
                if window is None:
                    items, cursor = await self._from_log(cursor, feed)
                else:
                    items, cursor = window
                    if not items:
                        with anyio.move_on_after(heartbeat) as scope:
                            await changed.wait()
                        if scope.cancelled_caught:
                            quiet_since = anyio.current_time()
                            yield []
                        continue
                matching = await self._select(items, feed)
                if matching or anyio.current_time() - quiet_since > heartbeat:
                    quiet_since = anyio.current_time()
                    yield matching
        finally:
            self.clients -= 1

    async def _select(self, items: list[Item], feed: FeedFilter) -> list[Item]:
        if feed.types:
            items = [i for i in items if feed.types.matches(i.type)]
        if feed.flow_run_ids:
            streams = {_FLOW_RUN + run for run in feed.flow_run_ids}
            items = [i for i in items if i.stream in streams]
        if feed.flow_names:
            unknown = {i.stream for i in items if i.stream.startswith(_FLOW_RUN) and i.stream not in self._names}
            if unknown:
                await to_thread.run_sync(self._learn, unknown)
            items = [i for i in items if self._names.get(i.stream) in feed.flow_names]
        return items

    def _learn(self, streams: set[str]) -> None:
        for stream in streams:
            first = self.store.read_stream(stream, limit=1)
            name = first[0].data.get("flow_name") if first and first[0].type == "flow-run.created" else None
            with self._lock:
                self._remember(stream, name)

    def _remember(self, stream: str, name: object) -> None:
        self._names[stream] = name if isinstance(name, str) else None
        self._names.move_to_end(stream)
        while len(self._names) > _NAMES:
            self._names.popitem(last=False)

