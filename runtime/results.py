"""Results of completed runs: content-addressed, in the log when small, else in files.

A value is serialised as JSON (orjson) when JSON gives it back exactly, as tagged JSON when
its types need saying (a tuple, a set, a datetime: runtime/serialization.py), as a pickle
otherwise, and addressed by the sha256 of its bytes (`<sha256>.json`); its `Completed` event
names that key (`ResultRef`,
events/payloads.py). JSON of at most `INLINE_LIMIT` bytes travels inside the event itself: one
atomic write instead of an event plus a file, and a worker on another machine can load it for
a cache hit or a replay from the log alone. Larger values and pickles go to a file named by the
key in the result storage (`LEDGERFLOW_RESULTS_URL`, default `<home>/results`: runtime/storage.py);
equal results share one file, written once. A value that
cannot be serialised at all is still returned to the caller; its event says why it was not
persisted.

Creating a file costs 50-500 us on a busy disk, several times a whole task run, so files are
written by a few background threads while the run goes on. `sync()` waits for every file
persisted so far; the event writer calls it before each append, so an event is committed only
after the file it names is written. A file is whole or absent (a local one goes to a
temporary name and is renamed) and is not fsynced one by one (a disk flush per task run).
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from ledgerflow.runtime.serialization import NotTaggable, is_plain_json, tag, untag
from ledgerflow.runtime.storage import LocalFolder, Storage, open_storage

__all__ = ["INLINE_LIMIT", "ResultStore"]

INLINE_LIMIT = 512
"""Bytes of JSON up to which a result is kept in its `Completed` event rather than a file."""


class ResultStore:
    def __init__(self, location: Path | str, writers: int = 4) -> None:
        """`location`: a folder, or an fsspec URL (runtime/storage.py)."""
        self.storage: Storage = open_storage(location)
        self._writers = writers
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._written: set[str] = set()
        self._pending: dict[str, Future[None]] = {}

    def persist(self, value: Any) -> dict[str, Any]:
        """Store `value`; return the `ResultRef` data (events/payloads.py) naming it."""
        try:
            payload, serializer = _encoded(value)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "not persisted"
            return {"persisted": False, "reason": f"cannot be serialised: {type(exc).__name__}: {exc}"}
        key = f"{hashlib.sha256(payload).hexdigest()}.{serializer}"
        if serializer != "pickle" and len(payload) <= INLINE_LIMIT:
            # The decoded JSON, not `value`: the event then holds what a file would have held.
            return {"persisted": True, "inline": True, "value": orjson.loads(payload), "key": key, "serializer": serializer}
        if key not in self._written:
            with self._lock:
                if key not in self._written:
                    self._written.add(key)
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(self._writers, thread_name_prefix="ledgerflow-results")
                    self._pending[key] = self._executor.submit(self._write, key, payload)
        return {"persisted": True, "key": key, "serializer": serializer}

    def sync(self) -> None:
        """Return once every value persisted so far is on disk; raise the first failed write."""
        with self._lock:
            pending, self._pending = self._pending, {}
        errors = [error for future in pending.values() if (error := future.exception()) is not None]
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.sync()
        if self._executor is not None:
            self._executor.shutdown()

    @property
    def root(self) -> Path:
        """The local folder the results are in (TypeError when they live elsewhere)."""
        if not isinstance(self.storage, LocalFolder):
            raise TypeError(f"results live at {self.storage.location}, not in a local folder")
        return self.storage.root

    def _write(self, key: str, payload: bytes) -> None:
        if not self.storage.exists(key):
            self.storage.write(key, payload)

    def load_ref(self, ref: Mapping[str, Any]) -> Any:
        """The value a `ResultRef` names."""
        if not ref.get("persisted") or not ref.get("key"):
            raise LookupError(f"the result was not persisted: {ref.get('reason', 'no key')}")
        if ref.get("inline"):
            return untag(ref["value"]) if ref.get("serializer") == TAGGED else ref["value"]
        return self.load(ref["key"])

    def load(self, key: str) -> Any:
        pending = self._pending.get(key)
        if pending is not None:
            pending.result()
        payload = self.storage.read(key)
        if key.endswith(".json"):
            return orjson.loads(payload)
        if key.endswith(f".{TAGGED}"):
            return untag(orjson.loads(payload))
        return pickle.loads(payload)


TAGGED = "json+types"


def _encoded(value: Any) -> tuple[bytes, str]:
    """The bytes to store `value` as and their serializer: JSON when it gives the value back
    exactly, tagged JSON when tags can say its types, else a pickle."""
    if is_plain_json(value):
        try:
            return orjson.dumps(value), "json"
        except TypeError:  # an int beyond 64 bits
            pass
    try:
        return orjson.dumps(tag(value)), TAGGED
    except (NotTaggable, TypeError):
        return pickle.dumps(value), "pickle"
