"""Work pools, their queues, and the workers that execute a pool's runs.

A pool is kept as events in the stream `work-pool-<name>`:

    work-pool.created    {pool, concurrency_limit}
    work-pool.paused / work-pool.resumed   {pool}
    work-queue.created   {pool, queue, priority, concurrency_limit}

Every pool has a queue `default` (priority 1) for runs that name no queue; a lower priority
number is served first. A worker's heartbeats go to its own stream `worker-<pool>/<name>`:

    worker.heartbeat     {pool, worker, queues, limit, running: [run id, ...], interval_seconds, host}
    worker.stopped       {pool, worker}

`fold_work_pool(events)` is the pure fold; the write use cases append with the stream version
they decided on. The pools `default` and `serve` are executed by the server's own runner and by
`flow.serve()`: they cannot be created as work pools.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ledgerflow.events.errors import ConcurrencyConflict
from ledgerflow.events.model import NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.runs import RunLog

__all__ = [
    "DEFAULT_QUEUE",
    "RESERVED_POOLS",
    "WorkPool",
    "WorkPoolError",
    "WorkPoolExists",
    "WorkPoolNotFound",
    "WorkQueue",
    "check_name",
    "create_work_pool",
    "create_work_queue",
    "fold_work_pool",
    "heartbeat_event",
    "pause_work_pool",
    "pool_stream",
    "read_work_pool",
    "resume_work_pool",
    "worker_stream",
]

DEFAULT_QUEUE = "default"
RESERVED_POOLS = frozenset({"default", "serve"})
"""Pools executed by the server's runner (`default`) and by `flow.serve()` (`serve`)."""
_ATTEMPTS = 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class WorkPoolError(Exception):
    """A work pool or queue cannot be created or changed as asked."""


class WorkPoolNotFound(WorkPoolError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no work pool {name!r}")
        self.name = name


class WorkPoolExists(WorkPoolError):
    """A pool or queue of that name exists already."""


def check_name(value: str, what: str) -> str:
    """A pool, queue or worker name: 1-100 letters, digits, '_', '.', '-', starting alphanumeric."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise WorkPoolError(
            f"a {what} name is 1-100 letters, digits, '_', '.' or '-' (starting with a letter or digit), not {value!r}"
        )
    return value


def _limit(value: int | None, what: str) -> int | None:
    if value is not None and not 1 <= value <= 10_000:
        raise WorkPoolError(f"a {what}'s concurrency limit is 1-10000 runs at once, not {value}")
    return value


def pool_stream(name: str) -> str:
    return f"work-pool-{name}"


def worker_stream(pool: str, name: str) -> str:
    return f"worker-{pool}/{name}"


@dataclass(frozen=True)
class WorkQueue:
    name: str
    priority: int
    concurrency_limit: int | None


@dataclass(frozen=True)
class WorkPool:
    """A pool as its stream tells it."""

    name: str
    concurrency_limit: int | None
    paused: bool
    queues: dict[str, WorkQueue]
    version: int
    created: datetime
    updated: datetime = field(compare=False)


def evolve_work_pool(state: WorkPool | None, event: StoredEvent) -> WorkPool | None:
    """The pool after one event of its stream."""
    data = event.data
    if event.type == "work-pool.created":
        default = WorkQueue(DEFAULT_QUEUE, 1, None)
        return WorkPool(str(data["pool"]), data.get("concurrency_limit"), False, {DEFAULT_QUEUE: default},
                        event.stream_position, event.occurred, event.occurred)
    if state is None:
        return None
    changed = replace(state, version=event.stream_position, updated=event.occurred)
    if event.type in ("work-pool.paused", "work-pool.resumed"):
        return replace(changed, paused=event.type == "work-pool.paused")
    if event.type == "work-queue.created":
        queue = WorkQueue(str(data["queue"]), int(data["priority"]), data.get("concurrency_limit"))
        return replace(changed, queues={**state.queues, queue.name: queue})
    return changed


def fold_work_pool(events: Iterable[StoredEvent]) -> WorkPool | None:
    state: WorkPool | None = None
    for event in events:
        state = evolve_work_pool(state, event)
    return state


def read_work_pool(log: RunLog, name: str) -> WorkPool:
    """Raises WorkPoolNotFound."""
    found = fold_work_pool(log.read_stream(pool_stream(name)))
    if found is None:
        raise WorkPoolNotFound(name)
    return found


def _event(kind: str, actor: str | None, **data: Any) -> NewEvent:
    return NewEvent(type=kind, data=data, meta=EventMeta(actor=actor))


def create_work_pool(log: RunLog, name: str, concurrency_limit: int | None = None, actor: str | None = None) -> WorkPool:
    """Raises WorkPoolExists, WorkPoolError (bad name or limit, a reserved name)."""
    check_name(name, "work pool")
    if name in RESERVED_POOLS:
        raise WorkPoolError(f"work pool {name!r} is reserved: the server runs its runs itself")
    _limit(concurrency_limit, "work pool")
    event = _event("work-pool.created", actor, pool=name, concurrency_limit=concurrency_limit)
    try:
        stored = log.append_streams([StreamAppend(pool_stream(name), [event], NO_STREAM)])
    except ConcurrencyConflict:
        raise WorkPoolExists(f"work pool {name!r} exists already") from None
    pool = fold_work_pool(stored)
    assert pool is not None
    return pool


def _change(log: RunLog, name: str, decide: Any) -> WorkPool:
    """Append what `decide(pool)` returns (None: nothing) on the version it was decided on."""
    for _ in range(_ATTEMPTS):
        history = log.read_stream(pool_stream(name))
        pool = fold_work_pool(history)
        if pool is None:
            raise WorkPoolNotFound(name)
        event = decide(pool)
        if event is None:
            return pool
        try:
            stored = log.append_streams([StreamAppend(pool_stream(name), [event], pool.version)])
        except ConcurrencyConflict:
            continue
        changed = fold_work_pool([*history, *stored])
        assert changed is not None
        return changed
    raise WorkPoolError(f"work pool {name!r} kept changing under {_ATTEMPTS} attempts to change it")


def pause_work_pool(log: RunLog, name: str, actor: str | None = None) -> WorkPool:
    """Workers claim no more runs of the pool (running ones go on). Idempotent."""
    return _change(log, name, lambda pool: None if pool.paused else _event("work-pool.paused", actor, pool=name))


def resume_work_pool(log: RunLog, name: str, actor: str | None = None) -> WorkPool:
    return _change(log, name, lambda pool: _event("work-pool.resumed", actor, pool=name) if pool.paused else None)


def create_work_queue(
    log: RunLog, pool: str, name: str, priority: int = 1, concurrency_limit: int | None = None, actor: str | None = None,
) -> WorkPool:
    """A queue in `pool`: its runs are handed out before those of queues with a higher
    priority number. Raises WorkPoolNotFound, WorkPoolExists, WorkPoolError."""
    check_name(name, "work queue")
    if not 1 <= priority <= 1_000_000:
        raise WorkPoolError(f"a work queue's priority is 1-1000000 (1 first), not {priority}")
    _limit(concurrency_limit, "work queue")

    def decide(current: WorkPool) -> NewEvent:
        if name in current.queues:
            raise WorkPoolExists(f"work pool {pool!r} has a queue {name!r} already")
        return _event("work-queue.created", actor, pool=pool, queue=name, priority=priority,
                      concurrency_limit=concurrency_limit)

    return _change(log, pool, decide)


def heartbeat_event(
    pool: str, worker: str, *, queues: Sequence[str], limit: int | None, running: Sequence[str],
    interval_seconds: float, host: str, stopped: bool = False,
) -> StreamAppend:
    """The append of one worker heartbeat (or of its stop)."""
    if stopped:
        event = NewEvent(type="worker.stopped", data={"pool": pool, "worker": worker})
    else:
        event = NewEvent(type="worker.heartbeat", data={
            "pool": pool, "worker": worker, "queues": list(queues), "limit": limit, "running": list(running),
            "interval_seconds": interval_seconds, "host": host,
        })
    return StreamAppend(worker_stream(pool, worker), [event])
