"""Where this process's runs write: the log (store or API), results and cache, set up once.

Opened lazily on the first flow run, from `LEDGERFLOW_*` settings; `ledgerflow.runtime.testing.harness`
points them elsewhere.

With an API server, opening checks first that the key may write (WriteRefused otherwise, as
one line, before any task runs) and forwards what earlier runs left in the spool; a server
that does not answer is warned about once, and the runs' events wait in the spool.
"""

from __future__ import annotations

import atexit
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.events import EventStore, InvalidSettings, Settings, open_store
from ledgerflow.events.settings import debug_requested, load_settings
from ledgerflow.runtime import excepthook
from ledgerflow.runtime.cache import CacheIndex
from ledgerflow.runtime.concurrency import Slots
from ledgerflow.runtime.control import ControlWatcher
from ledgerflow.runtime.eventlog import EventLog
from ledgerflow.runtime.heartbeat import Heartbeats
from ledgerflow.runtime.results import ResultStore
from ledgerflow.runtime.spool import Spool
from ledgerflow.runtime.storage import open_storage
from ledgerflow.runtime.writer import EventWriter

__all__ = ["Runtime", "current", "for_home", "from_settings", "install", "installed", "reset"]


@dataclass
class Runtime:
    writer: EventWriter
    results: ResultStore
    cache: CacheIndex
    log: EventLog
    """Where runs read the log: the store, or the API server."""
    watcher: ControlWatcher
    store: EventStore | None
    """The store this process opened itself (None when the events go to an API server)."""
    heartbeats: Heartbeats
    slots: Slots
    """This process's takes of concurrency limits."""

    def close(self) -> None:
        self.heartbeats.close()
        self.writer.close()
        self.slots.close()
        self.watcher.close()
        self.results.close()
        if self.store is not None:
            self.store.close()
        else:
            close = getattr(self.log, "close", None)  # the API server's client: its connections
            if close is not None:
                close()


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime:
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                try:
                    settings = load_settings()
                except InvalidSettings:
                    excepthook.install(debug=debug_requested())
                    raise
                excepthook.install(debug=settings.debug)
                _current = from_settings(settings)
                atexit.register(reset)
    return _current


def installed() -> Runtime | None:
    """The process's runtime if one is open (without opening one)."""
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


def from_settings(settings: Settings, *, key_checked: bool = False) -> Runtime:
    """A runtime as `LEDGERFLOW_*` settings describe it (see `for_home` for `key_checked`)."""
    return for_home(Path(settings.home), settings.store_url, settings.api_url, settings.api_key,
                    cancel_check_seconds=settings.cancel_check_seconds, heartbeat_seconds=settings.heartbeat_seconds,
                    concurrency_lease_seconds=settings.concurrency_lease_seconds, results_url=settings.results_url,
                    key_checked=key_checked)


def for_home(
    home: Path,
    store_url: str,
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    cancel_check_seconds: float = 0.5,
    heartbeat_seconds: float = 30.0,
    concurrency_lease_seconds: float = 30.0,
    results_url: str | None = None,
    key_checked: bool = False,
) -> Runtime:
    """`results_url`: where results live, with the cache index in its `cache/` folder (default:
    results in `<home>/results`, the index in `<home>/cache`). `key_checked`: the API server
    already accepted the key for appends (a worker's run process), so it is not asked again."""
    results = ResultStore(results_url or home / "results")
    cache = CacheIndex(results.storage.child("cache") if results_url else open_storage(home / "cache"))
    store: EventStore | None = None
    if api_url:
        log, writer = _remote(home, api_url, api_key, results, key_checked)
    else:
        store = log = open_store(store_url)
        writer = EventWriter(log, before_append=results.sync)
    watcher = ControlWatcher(log, cancel_check_seconds)
    return Runtime(writer, results, cache, log, watcher, store, Heartbeats(heartbeat_seconds),
                   Slots(log, concurrency_lease_seconds))


def _remote(
    home: Path, api_url: str, api_key: str | None, results: ResultStore, key_checked: bool,
) -> tuple[EventLog, EventWriter]:
    from ledgerflow.runtime.remote import HttpEventLog, WriteRefused  # only when talking to a server

    log = HttpEventLog.impatient(api_url, api_key)
    spool = Spool.in_home(home)
    try:
        reachable = key_checked or log.check_write_access()
    except WriteRefused:
        log.close()
        raise  # one line, through runtime/excepthook.py

    def warn(reason: str) -> None:
        print(f"ledgerflow: warning: the API server at {api_url} is unreachable ({reason}); the events are kept "
              f"in {spool.path} and sent by the next run or `ledgerflow events push`", file=sys.stderr, flush=True)

    writer = EventWriter(log, before_append=results.sync, spool=spool, on_spooling=warn)
    if not reachable:
        writer.start_spooling("no answer to GET /api/whoami")
    else:
        report = spool.forward(log)
        if report.waiting:
            writer.start_spooling(report.error or "the spool could not be emptied")
    return log, writer

