"""The work pools projection: pools (with their queues), workers, and the runs of each pool.

`work_pools` folds a pool's stream with its own pure fold (`events.workpools.evolve_work_pool`);
`workers` keeps each worker's last heartbeat (the store's clock: workers' clocks may differ);
`pool_runs` follows the runs requested into a work pool that the server does not run itself,
with their queue and current state, so that the runs due in a pool, and those holding its
slots, are one indexed query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

from ledgerflow.events import StoredEvent
from ledgerflow.events.states import STATE_NAMES
from ledgerflow.events.tables import UtcDateTime
from ledgerflow.events.workpools import DEFAULT_QUEUE, RESERVED_POOLS, WorkPool, WorkQueue, evolve_work_pool
from ledgerflow.projections.base import Row, Rows

__all__ = ["WorkPoolsProjection", "fold_work_pools", "work_pool_of"]


def work_pool_of(values: Row) -> WorkPool:
    """The folded pool a row stores."""
    queues = {q["name"]: WorkQueue(q["name"], q["priority"], q["concurrency_limit"]) for q in orjson.loads(values["queues"])}
    return WorkPool(values["key"], values["concurrency_limit"], values["paused"], queues, values["version"],
                    values["created"], values["updated"])


def _pool_row(pool: WorkPool) -> Row:
    queues = [{"name": q.name, "priority": q.priority, "concurrency_limit": q.concurrency_limit} for q in pool.queues.values()]
    return {"key": pool.name, "concurrency_limit": pool.concurrency_limit, "paused": pool.paused, "version": pool.version,
            "created": pool.created, "updated": pool.updated, "queues": orjson.dumps(queues).decode()}


def _worker_row(event: StoredEvent, stored: Row | None) -> Row:
    data = event.data
    key = f"{data['pool']}/{data['worker']}"
    row = dict(stored) if stored else {
        "key": key, "pool": data["pool"], "name": data["worker"], "host": None, "queues": "[]", "limit": None,
        "running": "[]", "interval_seconds": None, "last_heartbeat": event.recorded, "stopped": False,
    }
    if event.type == "worker.stopped":
        row.update(stopped=True, running="[]", last_heartbeat=event.recorded)
    else:
        row.update(host=data.get("host"), queues=orjson.dumps(data.get("queues", [])).decode(), limit=data.get("limit"),
                   running=orjson.dumps(data.get("running", [])).decode(), interval_seconds=data.get("interval_seconds"),
                   last_heartbeat=event.recorded, stopped=False)
    return row


def _in_a_worker_pool(data: dict[str, Any]) -> bool:
    pool = data.get("work_pool")
    return isinstance(pool, str) and pool not in RESERVED_POOLS


def fold_work_pools(rows: Rows, events: Sequence[StoredEvent]) -> Rows:
    """Pure: the rows `events` change, given the stored `rows`."""
    pools: dict[str, WorkPool | None] = {}
    workers: dict[str, Row] = {}
    runs: dict[str, Row] = {}
    stored_pools, stored_workers, stored_runs = (rows.get(n, {}) for n in ("work_pools", "workers", "pool_runs"))
    for event in events:
        kind, _, name = event.type.partition(".")
        data = event.data
        if kind in ("work-pool", "work-queue"):
            pool = str(data["pool"])
            if pool not in pools:
                pools[pool] = work_pool_of(stored_pools[pool]) if pool in stored_pools else None
            pools[pool] = evolve_work_pool(pools[pool], event)
        elif kind == "worker":
            key = f"{data['pool']}/{data['worker']}"
            workers[key] = _worker_row(event, workers.get(key) or stored_workers.get(key))
        elif kind == "flow-run":
            run_id = str(data.get("flow_run_id"))
            row = runs.get(run_id) or (dict(stored_runs[run_id]) if run_id in stored_runs else None)
            if row is None and name in ("created", "Scheduled") and _in_a_worker_pool(data):
                row = {"key": run_id, "pool": data["work_pool"], "queue": DEFAULT_QUEUE, "flow_name": None,
                       "state_type": None, "state_name": None, "scheduled_time": None}
            if row is None:
                continue
            if name == "created":
                row["queue"] = str(data.get("work_queue") or DEFAULT_QUEUE)
                row["flow_name"] = data.get("flow_name")
            elif name in STATE_NAMES:
                row["state_type"] = STATE_NAMES[name].value
                row["state_name"] = name
                when = data.get("scheduled_time") if STATE_NAMES[name].value == "SCHEDULED" else None
                row["scheduled_time"] = datetime.fromisoformat(when) if when else None
            runs[run_id] = row
    return {
        "work_pools": {name: _pool_row(pool) for name, pool in pools.items() if pool is not None},
        "workers": workers,
        "pool_runs": runs,
    }


class WorkPoolsProjection:
    name = "work_pools"
    version = 1
    types = ("work-pool.*", "work-queue.*", "worker.*", "flow-run.*")
    table_names = ("work_pools", "workers", "pool_runs")

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        pools = Table(
            f"{prefix}work_pools", metadata,
            Column("key", String(100), primary_key=True),
            Column("concurrency_limit", Integer()),
            Column("paused", Boolean(), nullable=False),
            Column("version", Integer(), nullable=False),
            Column("created", UtcDateTime(), nullable=False),
            Column("updated", UtcDateTime(), nullable=False),
            Column("queues", Text(), nullable=False),
        )
        workers = Table(
            f"{prefix}workers", metadata,
            Column("key", String(201), primary_key=True),
            Column("pool", String(100), nullable=False),
            Column("name", String(100), nullable=False),
            Column("host", String(200)),
            Column("queues", Text(), nullable=False),
            Column("limit", Integer()),
            Column("running", Text(), nullable=False),
            Column("interval_seconds", Float()),
            Column("last_heartbeat", UtcDateTime(), nullable=False),
            Column("stopped", Boolean(), nullable=False),
        )
        runs = Table(
            f"{prefix}pool_runs", metadata,
            Column("key", String(64), primary_key=True),
            Column("pool", String(200), nullable=False),
            Column("queue", String(200), nullable=False),
            Column("flow_name", String(200)),
            Column("state_type", String(20)),
            Column("state_name", String(40)),
            Column("scheduled_time", UtcDateTime()),
        )
        Index(f"{prefix}pool_runs_due", runs.c.pool, runs.c.state_type, runs.c.scheduled_time)
        return {"work_pools": pools, "workers": workers, "pool_runs": runs}

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        pools: set[str] = set()
        workers: set[str] = set()
        runs: set[str] = set()
        for event in events:
            data = event.data
            if event.type.startswith(("work-pool.", "work-queue.")):
                pools.add(str(data.get("pool")))
            elif event.type.startswith("worker."):
                workers.add(f"{data.get('pool')}/{data.get('worker')}")
            elif data.get("flow_run_id"):
                runs.add(str(data["flow_run_id"]))
        return {"work_pools": pools, "workers": workers, "pool_runs": runs}

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        return fold_work_pools(rows, events)
