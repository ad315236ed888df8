"""Where this process's runs write: the store (or API) and the result folder, set up once.

Opened lazily on the first flow run, from `LEDGERFLOW_*` settings; `ledgerflow.runtime.testing.harness`
points them elsewhere.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.events import EventStore, load_settings, open_store
from ledgerflow.runtime.cache import CacheIndex
from ledgerflow.runtime.results import ResultStore
from ledgerflow.runtime.writer import EventSink, EventWriter

__all__ = ["Runtime", "current", "for_home", "install", "reset"]


@dataclass
class Runtime:
    writer: EventWriter
    results: ResultStore
    cache: CacheIndex
    store: EventStore | None
    """The store this process opened itself (None when the events go to an API server)."""

    def close(self) -> None:
        self.writer.close()
        self.results.close()
        if self.store is not None:
            self.store.close()


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime:
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = _from_settings()
                atexit.register(reset)
    return _current


def install(runtime: Runtime | None) -> Runtime | None:
    """Make `runtime` the process's runtime; return the one it replaces."""
    global _current
    with _lock:
        previous, _current = _current, runtime
    return previous


def reset() -> None:
    """Flush and close the process's runtime (at exit, or when a harness is done)."""
    previous = install(None)
    if previous is not None:
        previous.close()


def _from_settings() -> Runtime:
    settings = load_settings()
    return for_home(Path(settings.home), settings.store_url, settings.api_url, settings.api_key)


def for_home(home: Path, store_url: str, api_url: str | None = None, api_key: str | None = None) -> Runtime:
    results, cache = ResultStore(home / "results"), CacheIndex(home / "cache")
    if api_url:
        from ledgerflow.runtime.remote import HttpEventSink  # only when talking to a server

        sink: EventSink = HttpEventSink(api_url, api_key)
        return Runtime(EventWriter(sink, before_append=results.sync), results, cache, None)
    store = open_store(store_url)
    return Runtime(EventWriter(store, before_append=results.sync), results, cache, store)
