"""`/api/work-pools` (pools and their queues) and `/api/workers` (heartbeats, the list).

Writes go through the work pool use cases (events/workpools.py); lists read the work pools
projection. Workers (a key of scope `worker` or above) ask `POST /api/work-pools/{pool}/due-runs`
for runs to start (each with its stream and its deployment's, which the run's process would
otherwise ask for next), claim each by appending `flow-run.Pending` with the run's stream
version (`POST /api/events`: a 409 means another worker claimed it), and report in with
`POST /api/workers/heartbeat`.
"""

from __future__ import annotations

import socket
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.api.http.deps import ReadModelDep, StateDep, StoreDep, require
from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.api.http.schemas import event_json
from ledgerflow.api.keys import Scope
from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.events.deployments import deployment_stream
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.workpools import (
    create_work_pool,
    create_work_queue,
    heartbeat_event,
    pause_work_pool,
    read_work_pool,
    resume_work_pool,
)
from ledgerflow.projections.pool_queries import (
    DueRun,
    WorkerInfo,
    WorkPoolInfo,
    due_pool_runs,
    get_work_pool,
    list_work_pools,
    list_workers,
    work_pool_info,
)

__all__ = ["ROUTERS"]

_PREFIX = "/api/work-pools"
pools_read = APIRouter(prefix=_PREFIX, tags=["work pools"], dependencies=[Depends(require(Scope.READ))])
pools_write = APIRouter(prefix=_PREFIX, tags=["work pools"], dependencies=[Depends(require(Scope.WRITE))])
pools_work = APIRouter(prefix=_PREFIX, tags=["work pools"], dependencies=[Depends(require(Scope.WORKER))])
workers_read = APIRouter(prefix="/api/workers", tags=["workers"], dependencies=[Depends(require(Scope.READ))])
workers_work = APIRouter(prefix="/api/workers", tags=["workers"], dependencies=[Depends(require(Scope.WORKER))])

PoolRef = Annotated[str, Path(min_length=1, max_length=100, description="The work pool's name")]
_NAME = Field(min_length=1, max_length=100, description="Letters, digits, '_', '.', '-'")
_LIMIT = Field(default=None, ge=1, le=10_000, description="Runs at once (none: no limit)")


class WorkPoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = _NAME
    concurrency_limit: int | None = _LIMIT


class WorkQueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = _NAME
    priority: int = Field(default=1, ge=1, le=1_000_000, description="1 is served first")
    concurrency_limit: int | None = _LIMIT


class DueRunsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = _NAME
    queues: list[str] = Field(default_factory=list, max_length=100, description="Only these queues (none: all)")
    limit: int = Field(default=10, ge=1, le=100)


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: str = _NAME
    name: str = _NAME
    queues: list[str] = Field(default_factory=list, max_length=100)
    limit: int | None = Field(default=None, ge=1, le=10_000)
    running: list[str] = Field(default_factory=list, max_length=10_000)
    interval_seconds: float = Field(gt=0, le=3600)
    host: str = Field(default_factory=socket.gethostname, max_length=200)
    stopped: bool = False


@pools_read.get("", response_model=list[WorkPoolInfo])
def list_pools(rm: ReadModelDep) -> list[WorkPoolInfo]:
    return list_work_pools(rm)


@pools_read.get("/{pool}", response_model=WorkPoolInfo, responses={404: {"description": "no such work pool"}})
def get_pool(rm: ReadModelDep, pool: PoolRef) -> WorkPoolInfo:
    """The pool, its queues, and how many runs are due and running in each."""
    return get_work_pool(rm, pool)


@pools_write.post("", response_model=WorkPoolInfo, status_code=201, responses={409: {"description": "exists already"}})
def create_pool(store: StoreDep, rm: ReadModelDep, body: WorkPoolIn) -> WorkPoolInfo:
    return work_pool_info(rm, create_work_pool(store, body.name, body.concurrency_limit, actor="api"))


@pools_write.post("/{pool}/pause", response_model=WorkPoolInfo, responses={404: {"description": "no such work pool"}})
def pause_pool(store: StoreDep, rm: ReadModelDep, pool: PoolRef) -> WorkPoolInfo:
    """Workers claim no more of its runs; running ones go on."""
    return work_pool_info(rm, pause_work_pool(store, pool, actor="api"))


@pools_write.post("/{pool}/resume", response_model=WorkPoolInfo, responses={404: {"description": "no such work pool"}})
def resume_pool(store: StoreDep, rm: ReadModelDep, pool: PoolRef) -> WorkPoolInfo:
    return work_pool_info(rm, resume_work_pool(store, pool, actor="api"))


@pools_write.post("/{pool}/queues", response_model=WorkPoolInfo, status_code=201,
                  responses={404: {"description": "no such work pool"}, 409: {"description": "exists already"}})
def create_queue(store: StoreDep, rm: ReadModelDep, pool: PoolRef, body: WorkQueueIn) -> WorkPoolInfo:
    return work_pool_info(rm, create_work_queue(store, pool, body.name, body.priority, body.concurrency_limit, actor="api"))


class HandedOutRun(DueRun):
    streams: dict[str, list[dict[str, Any]]] = Field(
        description="The run's stream and its deployment's, as GET /api/streams/{stream} gives them")


@pools_work.post("/{pool}/due-runs", response_model=list[HandedOutRun], responses={404: {"description": "no such work pool"}})
async def due_runs(state: StateDep, pool: PoolRef, body: DueRunsIn) -> OrjsonResponse:
    """Runs for this worker to claim now: none while the pool is paused; queues by priority;
    within the pool's and queues' concurrency limits. A run handed out is not handed to
    another worker for a few seconds."""

    def pick() -> list[dict[str, Any]]:
        work_pool = read_work_pool(state.store, pool)
        chosen = state.offers.hand_out(pool, lambda held: due_pool_runs(
            state.read_model, work_pool, queues=body.queues, limit=body.limit, offered=held))
        return _with_streams(state.store, chosen)

    return OrjsonResponse(await to_thread.run_sync(pick))


def _with_streams(store: EventStore, runs: list[DueRun]) -> list[dict[str, Any]]:
    """Each run with what its process reads first: the run's stream and its deployment's."""
    deployments: dict[str, list[StoredEvent]] = {}
    handed = []
    for run in runs:
        events = store.read_stream(flow_run_stream(run.id))
        streams = {flow_run_stream(run.id): events}
        deployment_id = next((str(e.data["deployment_id"]) for e in events if e.data.get("deployment_id")), None)
        if deployment_id is not None:
            if deployment_id not in deployments:
                deployments[deployment_id] = store.read_stream(deployment_stream(deployment_id))
            streams[deployment_stream(deployment_id)] = deployments[deployment_id]
        handed.append(run.model_dump() | {"streams": {name: [event_json(e) for e in found] for name, found in streams.items()}})
    return handed


@workers_read.get("", response_model=list[WorkerInfo])
def workers(rm: ReadModelDep, pool: Annotated[str | None, Query(max_length=100)] = None) -> list[WorkerInfo]:
    """Workers with their pool, last heartbeat, status (offline: stopped, or silent for two
    heartbeat intervals) and the runs they are executing."""
    return list_workers(rm, pool)


@workers_work.post("/heartbeat", status_code=204, responses={404: {"description": "no such work pool"}})
def heartbeat(store: StoreDep, body: HeartbeatIn) -> None:
    read_work_pool(store, body.pool)
    store.append_streams([heartbeat_event(
        body.pool, body.name, queues=body.queues, limit=body.limit, running=body.running,
        interval_seconds=body.interval_seconds, host=body.host, stopped=body.stopped,
    )])


ROUTERS = (pools_read, pools_work, pools_write, workers_read, workers_work)
