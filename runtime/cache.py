"""Task caching: `task_input_hash` and the index from cache keys to stored results.

The log stays the record (a `task-run.Completed` event names its cache key and result); the
index under `<home>/cache` only makes the lookup a file read instead of a scan of the log.
"""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ledgerflow.events.model import utcnow
from ledgerflow.runtime.hashing import hash_inputs

__all__ = ["CacheIndex", "CacheRecord", "task_input_hash"]

CacheRecord = dict[str, Any]


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's cache key function: the task's identity and a hash of its inputs."""
    inputs = hash_inputs(arguments)
    if inputs is None:
        return None
    return f"{context.task.task_key}:{inputs}"


class CacheIndex:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        try:
            record: CacheRecord = orjson.loads(self._path(key).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        expires = record.get("expires")
        if expires and datetime.fromisoformat(expires) <= (now or utcnow()):
            return None
        return record

    def put(self, key: str, task_run_id: str, result: dict[str, Any], expiration: timedelta | None) -> None:
        record = {
            "task_run_id": task_run_id,
            "result": result,
            "expires": (utcnow() + expiration).isoformat() if expiration else None,
        }
        path = self._path(key)
        partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        partial.write_bytes(orjson.dumps(record))
        os.replace(partial, path)
