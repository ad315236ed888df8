"""Task caching: cache policies (Prefect 3's), `task_input_hash`, and where cache keys point.

A task's cache policy turns a call into a key; a completed run records its key, and a later
call with the same key is `Cached`: it takes that run's stored result instead of running.
`DEFAULT` (the inputs, the task's source and the flow run id) is on unless a task says
otherwise, so a repeated call inside one run is Cached, as in Prefect 3. Policies add up with
`+`; `INPUTS - "name"` leaves an argument out; `cache_key_fn` still works and wins.

Keys that include the run id are only meaningful inside that run: they live in the run's
memory. Other keys go to an index of small files in the result storage's `cache/` folder
(runtime/storage.py), so another machine sharing that storage finds them; the log stays the record
(a Completed event names its cache key and result), the index only makes the lookup a read of
one file instead of a scan of the log.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from ledgerflow.events.model import utcnow
from ledgerflow.runtime.hashing import hash_inputs
from ledgerflow.runtime.storage import Storage

if TYPE_CHECKING:
    from ledgerflow.runtime.context import TaskRunContext

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheIndex",
    "CachePolicy",
    "CacheRecord",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "NoCache",
    "RunCache",
    "RunId",
    "TaskSource",
    "task_input_hash",
]

CacheRecord = dict[str, Any]


class CachePolicy:
    """Turns a task call into a cache key (None: this call is not cached)."""

    run_scoped = False
    """Whether its keys name the flow run (and so can only match inside it)."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if isinstance(other, NoCache) or isinstance(self, NoCache):
            return NO_CACHE
        mine = self.policies if isinstance(self, CompoundCachePolicy) else (self,)
        theirs = other.policies if isinstance(other, CompoundCachePolicy) else (other,)
        return CompoundCachePolicy(mine + theirs)

    def __repr__(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, repr=False)
class CompoundCachePolicy(CachePolicy):
    policies: tuple[CachePolicy, ...]

    @property
    def run_scoped(self) -> bool:  # type: ignore[override]
        return any(policy.run_scoped for policy in self.policies)

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        parts = []
        for policy in self.policies:
            part = policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
            if part is None:
                return None
            parts.append(part)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def __sub__(self, name: str) -> CachePolicy:
        return CompoundCachePolicy(tuple(p - name if isinstance(p, Inputs) else p for p in self.policies))

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.policies))


@dataclass(frozen=True, repr=False)
class Inputs(CachePolicy):
    """The call's inputs (their stable hash), less the arguments named in `exclude`."""

    exclude: tuple[str, ...] = ()

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        if not self.exclude:
            given = kwargs.get("input_hash")
            if given is not None:
                return str(given)
        return hash_inputs({k: v for k, v in inputs.items() if k not in self.exclude})

    def __sub__(self, name: str) -> Inputs:
        return Inputs((*self.exclude, name))

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {name!r}" for name in self.exclude)


class TaskSource(CachePolicy):
    """The task function's source code: editing the task invalidates its cache."""

    _hashes: dict[Any, str] = {}
    _lock = threading.Lock()

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        fn = task_ctx.task.fn
        known = self._hashes.get(fn)
        if known is None:
            try:
                source = inspect.getsource(fn).encode()
            except (OSError, TypeError):
                source = fn.__code__.co_code
            known = hashlib.sha256(source).hexdigest()
            with self._lock:
                self._hashes[fn] = known
        return known


class RunId(CachePolicy):
    """The flow run: a key that only matches inside the same run."""

    run_scoped = True

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        return str(task_ctx.flow_run.id)


class FlowParameters(CachePolicy):
    """The flow run's parameters."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        return hash_inputs(dict(flow_parameters))


class NoCache(CachePolicy):
    """No caching at all."""

    def compute_key(self, task_ctx: TaskRunContext, inputs: Mapping[str, Any],
                    flow_parameters: Mapping[str, Any], **kwargs: Any) -> str | None:
        return None


INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
NO_CACHE = NoCache()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's cache key function: the task's identity and a hash of its inputs."""
    inputs = hash_inputs(arguments)
    if inputs is None:
        return None
    return f"{context.task.task_key}:{inputs}"


def _expired(record: CacheRecord, now: datetime | None) -> bool:
    expires = record.get("expires")
    return isinstance(expires, str) and datetime.fromisoformat(expires) <= (now or utcnow())


def _record(task_run_id: str, result: dict[str, Any], expiration: timedelta | None) -> CacheRecord:
    return {
        "task_run_id": task_run_id,
        "result": result,
        "expires": (utcnow() + expiration).isoformat() if expiration else None,
    }


@dataclass
class RunCache:
    """A flow run's own cache index, for keys that name the run."""

    records: dict[str, CacheRecord] = field(default_factory=dict)

    def get(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        record = self.records.get(key)
        return None if record is None or _expired(record, now) else record

    def put(self, key: str, task_run_id: str, result: dict[str, Any], expiration: timedelta | None) -> None:
        self.records[key] = _record(task_run_id, result, expiration)


class CacheIndex:
    """The index of keys that outlive a run: one small file per key."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _name(key: str) -> str:
        return f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        try:
            record: CacheRecord = orjson.loads(self.storage.read(self._name(key)))
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return None if _expired(record, now) else record

    def put(self, key: str, task_run_id: str, result: dict[str, Any], expiration: timedelta | None) -> None:
        self.storage.write(self._name(key), orjson.dumps(_record(task_run_id, result, expiration)))
