"""`/api/flow-runs` and `/api/analytics`: the projection queries over HTTP.

Wherever a path names a run, it may be its id, a unique prefix of its id, or its run name.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.api.http.deps import ReadModelDep, StoreDep, require
from ledgerflow.api.http.schemas import EventOut, event_json
from ledgerflow.api.keys import Scope
from ledgerflow.events.runs import RunNotDue, cancel_flow_run, propose_flow_run_state, resume_flow_run
from ledgerflow.events.states import STATE_NAMES
from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.runtime.replays import ReplayOptions, plan_replay, request_replay
from ledgerflow.projections import queries
from ledgerflow.projections.lookup import resolve_run
from ledgerflow.projections.models import (
    AnalyticsReport,
    Artifact,
    FlowRunPage,
    LineageGraph,
    LogPage,
    RunDetail,
    RunHistory,
    RunSnapshot,
    TaskRun,
)

__all__ = ["analytics_router", "router", "task_runs_router", "write_router"]

router = APIRouter(prefix="/api/flow-runs", tags=["flow runs"], dependencies=[Depends(require(Scope.READ))])
write_router = APIRouter(prefix="/api/flow-runs", tags=["flow runs"], dependencies=[Depends(require(Scope.WRITE))])
task_runs_router = APIRouter(prefix="/api/task-runs", tags=["task runs"], dependencies=[Depends(require(Scope.READ))])
analytics_router = APIRouter(prefix="/api/analytics", tags=["analytics"], dependencies=[Depends(require(Scope.READ))])

RunId = Annotated[str, Path(min_length=1, max_length=100, description="An id, a unique id prefix or a run name")]


def _flow_run(rm: ReadModelDep, flow_run_id: RunId) -> str:
    return resolve_run(rm, flow_run_id)


def _any_run(rm: ReadModelDep, flow_run_id: RunId) -> str:
    return resolve_run(rm, flow_run_id, ("flow_runs", "task_runs"))


def _task_run(rm: ReadModelDep, task_run_id: RunId) -> str:
    return resolve_run(rm, task_run_id, ("task_runs",))


FlowRunRef = Annotated[str, Depends(_flow_run)]
"""The flow run a path names."""
AnyRunRef = Annotated[str, Depends(_any_run)]
"""The flow run or task run a path names."""
TaskRunRef = Annotated[str, Depends(_task_run)]


@router.get("", response_model=FlowRunPage)
def list_flow_runs(
    rm: ReadModelDep,
    flow_name: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[str | None, Query(max_length=40, description="State type (FAILED) or name (Cached)")] = None,
    tag: Annotated[list[str] | None, Query(description="Runs having every one of these tags")] = None,
    deployment_id: Annotated[str | None, Query(max_length=100)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: Literal["newest", "oldest"] = "newest",
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")] = None,
) -> FlowRunPage:
    return queries.list_flow_runs(
        rm, flow_name=flow_name, state=state, tags=tag or (), deployment_id=deployment_id,
        since=since, until=until, sort=sort, limit=limit, cursor=cursor,
    )


@router.get("/history", response_model=RunHistory)
def flow_run_history(
    rm: ReadModelDep,
    since: Annotated[datetime | None, Query(description="Default: 24 hours before until")] = None,
    until: Annotated[datetime | None, Query(description="Default: now")] = None,
    grain: Literal["minute", "hour", "day"] = "hour",
    flow_name: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[str | None, Query(max_length=40, description="State type (FAILED) or name (Cached)")] = None,
    tag: Annotated[list[str] | None, Query(description="Runs having every one of these tags")] = None,
    deployment_id: Annotated[str | None, Query(max_length=100)] = None,
) -> RunHistory:
    """Flow runs created per minute, hour or day (UTC), by current state type: the run-history
    chart. Takes the filters of `GET /api/flow-runs`."""
    start = since or (until or datetime.now(UTC)) - timedelta(hours=24)
    return queries.run_history(
        rm, since=start, until=until, grain=grain, flow_name=flow_name, state=state, tags=tag or (),
        deployment_id=deployment_id,
    )


@router.get("/{flow_run_id}", response_model=RunDetail)
def get_flow_run(rm: ReadModelDep, flow_run_id: FlowRunRef) -> RunDetail:
    """The flow run with its task runs and the states it went through."""
    return queries.get_run(rm, flow_run_id)


@router.get("/{flow_run_id}/logs", response_model=LogPage)
def flow_run_logs(
    rm: ReadModelDep,
    flow_run_id: FlowRunRef,
    min_level: Annotated[int, Query(ge=0, le=100)] = 0,
    task_run_id: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> LogPage:
    return queries.run_logs(rm, flow_run_id, min_level=min_level, task_run_id=task_run_id, after=after, limit=limit)


@router.get("/{flow_run_id}/artifacts", response_model=list[Artifact])
def flow_run_artifacts(rm: ReadModelDep, flow_run_id: FlowRunRef) -> list[Artifact]:
    return queries.run_artifacts(rm, flow_run_id)


@router.get("/{flow_run_id}/lineage", response_model=LineageGraph)
def flow_run_lineage(
    rm: ReadModelDep,
    flow_run_id: AnyRunRef,
    direction: Literal["upstream", "downstream", "both"] = "both",
    depth: Annotated[int, Query(ge=0, le=20)] = 3,
) -> LineageGraph:
    return queries.lineage(rm, flow_run_id, direction=direction, depth=depth)


@router.get("/{flow_run_id}/as-of", response_model=RunSnapshot)
def flow_run_as_of(
    rm: ReadModelDep,
    flow_run_id: FlowRunRef,
    cursor: Annotated[str | None, Query(max_length=64, description="A log cursor")] = None,
    time: Annotated[datetime | None, Query(description="A timezone-aware time")] = None,
) -> RunSnapshot:
    """The run and its task runs as they were at a cursor or a time (give exactly one)."""
    return queries.run_as_of(rm, flow_run_id, cursor=cursor, at=time)


@task_runs_router.get("/{task_run_id}", response_model=TaskRun)
def get_task_run(rm: ReadModelDep, task_run_id: TaskRunRef) -> TaskRun:
    """One task run, by its id."""
    return queries.get_task_run(rm, task_run_id)


class SetStateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=40, description=f"A state name: {', '.join(STATE_NAMES)}")
    message: str | None = Field(default=None, max_length=1000)
    force: bool = Field(default=False, description="Skip the rules (an operator's override)")


@write_router.post(
    "/{flow_run_id}/set-state",
    response_model=EventOut,
    responses={404: {"description": "no such run"},
               409: {"description": "the rules refuse it (`until` set when it is only too early)"},
               422: {"description": "unknown state name"}},
)
def set_state(store: StoreDep, flow_run_id: FlowRunRef, body: SetStateRequest) -> Any:
    """Propose a state for the run; the rule book decides (unless `force`)."""
    try:
        event = propose_flow_run_state(store, flow_run_id, body.name, message=body.message, force=body.force, actor="api")
    except RunNotDue as exc:
        return OrjsonResponse({"detail": str(exc), "until": exc.until.isoformat()}, 409)
    return event_json(event)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(default=None, max_length=1000)


@write_router.post(
    "/{flow_run_id}/cancel",
    response_model=EventOut,
    responses={404: {"description": "no such run"}, 409: {"description": "already finished or cancelled, or a racing change won"}},
)
def cancel(store: StoreDep, flow_run_id: FlowRunRef, body: CancelRequest | None = None) -> dict[str, object]:
    """Cancel the run: `Cancelled` if it has not started, else `Cancelling`."""
    return event_json(cancel_flow_run(store, flow_run_id, body.message if body else None))


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_input: dict[str, Any] | None = Field(default=None, description="The input the run waits for (its pause's schema)")


@write_router.post(
    "/{flow_run_id}/resume",
    response_model=EventOut,
    responses={404: {"description": "no such run"},
               409: {"description": "not paused, or its pause expired (the run is Failed now)"},
               422: {"description": "the input is missing, unexpected or does not fit the schema"}},
)
def resume(store: StoreDep, flow_run_id: FlowRunRef, body: ResumeRequest | None = None) -> dict[str, object]:
    """Resume a paused run (`Running`: its flow goes on) or a suspended one (`Resuming`: the
    server's runner executes it again, reusing its completed task results)."""
    return event_json(resume_flow_run(store, flow_run_id, body.run_input if body else None, actor="api"))


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict, description="Parameters to change (the rest as recorded)")
    from_task: str | None = Field(default=None, max_length=400, description="Run everything from the first call of this task on")
    no_reuse: list[Annotated[str, Field(max_length=400)]] = Field(default_factory=list, max_length=100,
                                                                  description="Tasks that always run")
    dry_run: bool = Field(default=False, description="Only say which task runs would be reused")


class ReplayVerdict(BaseModel):
    task_run_id: str
    task_name: str
    occurrence: int
    state_name: str | None
    reuse: bool
    reason: str


class ReplayAccepted(BaseModel):
    flow_run_id: str | None = Field(description="The replay's run, executed by the server (None for a dry run)")
    replay_of: str
    plan: list[ReplayVerdict] = Field(description="The original's task runs and whether an unchanged replay reuses each")


@write_router.post(
    "/{flow_run_id}/replay",
    response_model=ReplayAccepted,
    status_code=202,
    responses={404: {"description": "no such run"}, 409: {"description": "the run has not finished"},
               422: {"description": "it records no entrypoint, or the body is invalid"}},
)
def replay(store: StoreDep, flow_run_id: FlowRunRef, body: ReplayRequest | None = None) -> ReplayAccepted:
    """Replay a finished run from its last successful task: a new run reusing what succeeded.
    The server executes it (its built-in runner); the reply names it at once."""
    body = body or ReplayRequest()
    options = ReplayOptions(body.from_task, tuple(body.no_reuse))
    preview = [ReplayVerdict(**verdict._asdict()) for verdict in plan_replay(store, flow_run_id, options).preview()]
    new_id = None
    if not body.dry_run:
        new_id = request_replay(store, flow_run_id, parameters=body.parameters, options=options, actor="api")
    return ReplayAccepted(flow_run_id=new_id, replay_of=flow_run_id, plan=preview)


def _report(
    rm: ReadModelDep, dimension: Literal["flow", "deployment", "tag", "task"], since: datetime | None, until: datetime | None,
    grain: Literal["hour", "day"], name: str | None,
) -> AnalyticsReport:
    start = since or datetime.now(UTC) - timedelta(days=7)
    return queries.analytics(rm, since=start, until=until, grain=grain, dimension=dimension, value=name)


@analytics_router.get("/flows", response_model=AnalyticsReport)
def flow_analytics(
    rm: ReadModelDep,
    since: Annotated[datetime | None, Query(description="Default: 7 days ago")] = None,
    until: datetime | None = None,
    grain: Literal["hour", "day"] = "day",
    flow_name: Annotated[str | None, Query(max_length=200)] = None,
) -> AnalyticsReport:
    """Runs, success rate and duration percentiles per flow."""
    return _report(rm, "flow", since, until, grain, flow_name)


@analytics_router.get("/tasks", response_model=AnalyticsReport)
def task_analytics(
    rm: ReadModelDep,
    since: Annotated[datetime | None, Query(description="Default: 7 days ago")] = None,
    until: datetime | None = None,
    grain: Literal["hour", "day"] = "day",
    task_key: Annotated[str | None, Query(max_length=500)] = None,
) -> AnalyticsReport:
    """Runs, success rate and duration percentiles per task."""
    return _report(rm, "task", since, until, grain, task_key)


@analytics_router.get("/deployments", response_model=AnalyticsReport)
def deployment_analytics(
    rm: ReadModelDep,
    since: Annotated[datetime | None, Query(description="Default: 7 days ago")] = None,
    until: datetime | None = None,
    grain: Literal["hour", "day"] = "day",
    deployment_id: Annotated[str | None, Query(max_length=100)] = None,
) -> AnalyticsReport:
    """Runs, success rate and duration percentiles per deployment."""
    return _report(rm, "deployment", since, until, grain, deployment_id)


@analytics_router.get("/tags", response_model=AnalyticsReport)
def tag_analytics(
    rm: ReadModelDep,
    since: Annotated[datetime | None, Query(description="Default: 7 days ago")] = None,
    until: datetime | None = None,
    grain: Literal["hour", "day"] = "day",
    tag: Annotated[str | None, Query(max_length=200)] = None,
) -> AnalyticsReport:
    """Runs, success rate and duration percentiles per tag."""
    return _report(rm, "tag", since, until, grain, tag)
