"""Following the log in this process: the signal that events were appended, and closing.

A store bumps `AppendSignal` after each append it commits (and when another process's append
is heard of, see events/postgres.py); subscribers wait on it between reads instead of
polling. The signal also counts readers in flight, so that closing the store waits for them to
hand their connections back before the engine is disposed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["AppendSignal"]


class AppendSignal:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._closed = False
        self._readers = 0

    @property
    def generation(self) -> int:
        """Bumped by every append: a reader notes it before reading, then waits for a newer one."""
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self) -> None:
        """Events were appended: wake every waiting reader."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Block until an append newer than generation `seen`, the close, or `timeout`; True
        if there was an append (and the store is still open)."""
        with self._condition:
            return self._condition.wait_for(
                lambda: self._generation != seen or self._closed, timeout
            ) and not self._closed

    @contextmanager
    def reading(self) -> Iterator[bool]:
        """Around one read: yields False, for no read, once the store is closing."""
        with self._condition:
            if self._closed:
                yield False
                return
            self._readers += 1
        try:
            yield True
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    def close(self, timeout: float = 10) -> None:
        """Refuse new reads, wake every waiter, and wait (up to `timeout`) for reads in flight."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._readers == 0, timeout=timeout)
