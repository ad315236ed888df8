"""A catch-up subscription: read the log from a cursor, then follow new appends live.

Appends in this process wake subscribers at once; appends from other processes arrive through
the store's cross-process signal (PostgreSQL NOTIFY) or, failing that, by polling. A lost
signal only delays delivery: the log, not the signal, is what is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.following import AppendSignal
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.typefilter import TypePatterns

__all__ = ["FeedSource", "Subscription"]

_FIRST_RETRY = 0.002
_HELD_BACK_RETRY = 0.02
_HELD_BACK_FOR = 2.0


class FeedSource(Protocol):
    """What a subscription needs of its store (SqlEventStore provides it)."""

    @property
    def poll_interval(self) -> float:
        """Seconds between reads when no append signal comes (other processes' appends)."""
        ...

    @property
    def signal(self) -> AppendSignal: ...

    def read_feed(
        self, cursor: Cursor, limit: int, patterns: TypePatterns
    ) -> tuple[list[StoredEvent], Cursor] | None:
        """A page after `cursor` and the cursor to read on from; None once the store closes."""
        ...


class Subscription:
    """Iterate to receive events one by one forever; `poll(timeout)` takes them in batches.

    `cursor` is where it reads on from: past the last event received, and past the events of
    other types it skipped, so a filtered subscription never scans them again. A reader may
    move it (forward, or back to read again)."""

    def __init__(self, source: FeedSource, after: Cursor, types: TypePatterns, batch_size: int) -> None:
        self._source = source
        self._types = types
        self._batch_size = batch_size
        self._closed = False
        self.cursor = after

    def poll(self, timeout: float | None = None) -> list[StoredEvent]:
        """The next events after the cursor, waiting up to `timeout` seconds (None: forever)."""
        source = self._source
        signal = source.signal
        deadline = None if timeout is None else time.monotonic() + timeout
        wait: float | None = _FIRST_RETRY
        woken_at = time.monotonic()
        while not self.closed:
            seen = signal.generation
            page = source.read_feed(self.cursor, self._batch_size, self._types)
            if page is None:
                break
            batch, self.cursor = page
            if batch:
                return batch
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            step = source.poll_interval if wait is None else wait
            woken = signal.wait(seen, step if remaining is None else min(step, remaining))
            # After a wake-up the new event may still sit behind the visibility horizon (an
            # older transaction has not finished): re-read every few milliseconds, up to
            # _HELD_BACK_RETRY apart, for _HELD_BACK_FOR seconds; then back to the poll interval.
            if woken:
                wait, woken_at = _FIRST_RETRY, time.monotonic()
            elif wait is not None and time.monotonic() - woken_at < _HELD_BACK_FOR:
                wait = min(wait * 2, _HELD_BACK_RETRY)
            else:
                wait = None
        return []

    def __iter__(self) -> Iterator[StoredEvent]:
        while not self.closed:
            yield from self.poll(timeout=None)

    @property
    def closed(self) -> bool:
        """Closed, or its store is: `poll` returns nothing from now on."""
        return self._closed or self._source.signal.closed

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
