"""Queries on the work pools projection: pools with their queues, workers, and the runs a
pool's workers may start next (pause, queue priority and every concurrency limit respected)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Literal

import orjson
from pydantic import BaseModel
from sqlalchemy import Connection, Table, case, func, select

from ledgerflow.events.states import StateType
from ledgerflow.events.workpools import WorkPool, WorkPoolNotFound
from ledgerflow.projections.queries import WAITING_TO_START
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.workpools import work_pool_of

__all__ = ["DueRun", "QueueInfo", "WorkPoolInfo", "WorkerInfo", "due_pool_runs", "get_work_pool", "list_work_pools",
           "list_workers", "work_pool_info"]

HOLDING = (StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value)
"""States of a run that occupy a slot of its pool and queue."""
OFFLINE_AFTER_BEATS = 2
"""A worker is offline when it missed this many heartbeat intervals."""


class QueueInfo(BaseModel):
    name: str
    priority: int
    concurrency_limit: int | None
    due: int
    running: int


class WorkPoolInfo(BaseModel):
    name: str
    concurrency_limit: int | None
    paused: bool
    queues: list[QueueInfo]
    due: int
    """Runs waiting to start whose time has come."""
    running: int
    """Runs claimed and not finished."""
    created: datetime
    updated: datetime


class WorkerInfo(BaseModel):
    name: str
    pool: str
    host: str | None
    queues: list[str]
    limit: int | None
    status: Literal["online", "offline"]
    last_heartbeat: datetime
    running: list[str]


class DueRun(BaseModel):
    id: str
    queue: str
    scheduled_time: datetime


def _pool(conn: Connection, tables: dict[str, Table], name: str) -> WorkPool:
    row = conn.execute(select(tables["work_pools"]).where(tables["work_pools"].c.key == name)).mappings().first()
    if row is None:
        raise WorkPoolNotFound(name)
    return work_pool_of(dict(row))


def _counts(conn: Connection, runs: Table, pools: Sequence[str], now: datetime) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(due, holding) run counts per (pool, queue)."""
    due: Counter[tuple[str, str]] = Counter()
    holding: Counter[tuple[str, str]] = Counter()
    waiting = (runs.c.state_type == StateType.SCHEDULED.value) & runs.c.state_name.in_(WAITING_TO_START) & (
        runs.c.scheduled_time <= now)
    for flag, counter in ((waiting, due), (runs.c.state_type.in_(HOLDING), holding)):
        query = select(runs.c.pool, runs.c.queue, func.count()).where(runs.c.pool.in_(pools), flag).group_by(
            runs.c.pool, runs.c.queue)
        for pool, queue, count in conn.execute(query):
            counter[(pool, queue)] = int(count)
    return due, holding


def _info(pool: WorkPool, due: Counter[tuple[str, str]], holding: Counter[tuple[str, str]]) -> WorkPoolInfo:
    queues = sorted(pool.queues.values(), key=lambda q: (q.priority, q.name))
    return WorkPoolInfo(
        name=pool.name, concurrency_limit=pool.concurrency_limit, paused=pool.paused,
        queues=[QueueInfo(name=q.name, priority=q.priority, concurrency_limit=q.concurrency_limit,
                          due=due[(pool.name, q.name)], running=holding[(pool.name, q.name)]) for q in queues],
        due=sum(n for (p, _), n in due.items() if p == pool.name),
        running=sum(n for (p, _), n in holding.items() if p == pool.name),
        created=pool.created, updated=pool.updated,
    )


def list_work_pools(rm: ReadModel, now: datetime | None = None) -> list[WorkPoolInfo]:
    rm.refresh()
    with rm.reading("work_pools") as (conn, tables):
        pools = [work_pool_of(dict(row)) for row in
                 conn.execute(select(tables["work_pools"]).order_by(tables["work_pools"].c.key)).mappings()]
        due, holding = _counts(conn, tables["pool_runs"], [p.name for p in pools], now or datetime.now(UTC))
    return [_info(pool, due, holding) for pool in pools]


def get_work_pool(rm: ReadModel, name: str, now: datetime | None = None) -> WorkPoolInfo:
    """Raises WorkPoolNotFound."""
    rm.refresh()
    with rm.reading("work_pools") as (conn, tables):
        pool = _pool(conn, tables, name)
        due, holding = _counts(conn, tables["pool_runs"], [name], now or datetime.now(UTC))
    return _info(pool, due, holding)


def work_pool_info(rm: ReadModel, pool: WorkPool, now: datetime | None = None) -> WorkPoolInfo:
    """`pool` as its stream has it (right after a write), with the projection's run counts."""
    rm.refresh()
    with rm.reading("work_pools") as (conn, tables):
        due, holding = _counts(conn, tables["pool_runs"], [pool.name], now or datetime.now(UTC))
    return _info(pool, due, holding)


def list_workers(rm: ReadModel, pool: str | None = None, now: datetime | None = None) -> list[WorkerInfo]:
    """Workers that ever sent a heartbeat; `offline` when stopped or silent for two intervals."""
    rm.refresh()
    moment = now or datetime.now(UTC)
    with rm.reading("work_pools") as (conn, tables):
        workers = tables["workers"]
        query = select(workers).order_by(workers.c.pool, workers.c.name)
        if pool is not None:
            query = query.where(workers.c.pool == pool)
        rows = list(conn.execute(query).mappings())
    found = []
    for row in rows:
        interval = row["interval_seconds"] or 0.0
        silent = (moment - row["last_heartbeat"]).total_seconds() > OFFLINE_AFTER_BEATS * interval
        found.append(WorkerInfo(
            name=row["name"], pool=row["pool"], host=row["host"], queues=orjson.loads(row["queues"]), limit=row["limit"],
            status="offline" if row["stopped"] or silent else "online", last_heartbeat=row["last_heartbeat"],
            running=orjson.loads(row["running"]) if not row["stopped"] else [],
        ))
    return found


def due_pool_runs(
    rm: ReadModel,
    work_pool: WorkPool,
    *,
    queues: Collection[str] = (),
    limit: int,
    offered: Collection[str] = (),
    now: datetime | None = None,
) -> list[DueRun]:
    """Up to `limit` runs of `work_pool` (as its stream has it: a pause counts at once; of
    `queues`, when given) to start now: none while the pool is paused; queues by priority, then
    soonest due first; no more than the pool's and each queue's concurrency limit allow,
    counting the runs already holding a slot and the ones `offered` to a worker that has not
    claimed them yet."""
    if work_pool.paused:
        return []
    rm.refresh()
    moment = now or datetime.now(UTC)
    pool = work_pool.name
    with rm.reading("work_pools") as (conn, tables):
        runs = tables["pool_runs"]
        _, holding = _counts(conn, runs, [pool], moment)
        taken: Counter[str] = Counter({queue: n for (_, queue), n in holding.items()})
        if offered:
            still_waiting = select(runs.c.queue).where(
                runs.c.key.in_(list(offered)), runs.c.state_type == StateType.SCHEDULED.value)
            taken.update(row[0] for row in conn.execute(still_waiting))
        room = (work_pool.concurrency_limit - sum(taken.values())) if work_pool.concurrency_limit else limit
        if room <= 0:
            return []
        full = [q.name for q in work_pool.queues.values()
                if q.concurrency_limit is not None and taken[q.name] >= q.concurrency_limit]
        priority = case({q.name: q.priority for q in work_pool.queues.values()}, value=runs.c.queue, else_=1_000_001)
        query = (
            select(runs.c.key, runs.c.queue, runs.c.scheduled_time)
            .where(runs.c.pool == pool, runs.c.state_type == StateType.SCHEDULED.value,
                   runs.c.state_name.in_(WAITING_TO_START), runs.c.scheduled_time <= moment)
            .order_by(priority, runs.c.scheduled_time, runs.c.key)
            .limit(min(limit, room) + len(offered))
        )
        if queues:
            query = query.where(runs.c.queue.in_(list(queues)))
        if full:
            query = query.where(runs.c.queue.not_in(full))
        candidates = list(conn.execute(query))
    chosen: list[DueRun] = []
    skip = set(offered)
    for key, queue, scheduled_time in candidates:
        if len(chosen) >= min(limit, room):
            break
        queue_limit = work_pool.queues[queue].concurrency_limit if queue in work_pool.queues else None
        if key in skip or (queue_limit is not None and taken[queue] >= queue_limit):
            continue
        taken[queue] += 1
        chosen.append(DueRun(id=key, queue=queue, scheduled_time=scheduled_time))
    return chosen
