"""Keeping Python's cyclic garbage collector off the hot paths.

Pausing it while many acyclic objects are made at once (`cycle_collection_paused`):

Decoding thousands of events (a replay's plan, a rebuild, a page of the feed) allocates ten
objects per event that all survive; every few hundred allocations the collector scans them,
and every few thousand it scans everything the process holds. None of these objects form
cycles, so the scans find nothing: pausing the collector for the duration removes that cost
(2-3x on a 2,000-event read in a busy process). Pauses nest and may overlap across threads:
the collector runs again when the last one ends, if it ran before the first.

Freezing what a long-running process holds once it is set up (`freeze_startup_heap`, called
by the server and `ledgerflow automations run` once their services have started):
a full collection scans every object the process holds, and with the server's modules,
pydantic schemas and SQLAlchemy metadata loaded that stalls every thread for ~100 ms, about
once a second under a thousand deliveries a second (the automation engine's fan-out
benchmark: most of its p99). Those objects live as long as the process; frozen, the collector
no longer scans them, and a full collection takes a few milliseconds.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cycle_collection_paused", "freeze_startup_heap"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False
_frozen = False


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


def freeze_startup_heap() -> None:
    """Collect, then move every object the process holds out of the collector's reach; only the
    first call in a process does it. Frozen objects are never collected, even once they become
    garbage: a process that starts servers again and again (a test run) pins only the first's."""
    global _frozen
    with _lock:
        if _frozen:
            return
        _frozen = True
    gc.collect()
    gc.freeze()
