"""`/api/deployments`: create or update, list, inspect, change, run, pause, resume, delete.

Writes go through the deployment use cases (events/deployments.py) on the log; a new or changed
definition is checked first by loading its flow in a child process (parameters against the
signature). Bad input gets a 4xx with one readable line and writes nothing. The list reads the
deployments projection; one deployment is read from its stream (exact right after a write).
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from ledgerflow.api.deployments import DeploymentIn, DeploymentOut, RunIn, deployment_out
from ledgerflow.api.http.deps import ReadModelDep, StoreDep, require
from ledgerflow.api.keys import Scope
from ledgerflow.events import EventStore
from ledgerflow.events.deployments import (
    Deployment,
    DeploymentNotFound,
    apply_deployment,
    delete_deployment,
    deployment_id,
    pause_deployment,
    read_deployment,
    request_deployment_run,
    resume_deployment,
)
from ledgerflow.projections import queries
from ledgerflow.runtime.deployments import build_spec_isolated

__all__ = ["router", "write_router"]

router = APIRouter(prefix="/api/deployments", tags=["deployments"], dependencies=[Depends(require(Scope.READ))])
write_router = APIRouter(prefix="/api/deployments", tags=["deployments"], dependencies=[Depends(require(Scope.WRITE))])

DeploymentRef = Annotated[str, Path(min_length=1, max_length=100, description="The deployment's id")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such deployment"}}


def _live(store: EventStore, ident: str) -> Deployment:
    found = read_deployment(store, ident)
    if found is None or found.deleted:
        raise DeploymentNotFound(ident)
    return found


def _ident(text: str) -> str:
    return str(deployment_id(text)) if "/" in text else text


@router.get("", response_model=list[DeploymentOut])
def list_deployments(
    rm: ReadModelDep,
    flow_name: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[list[str] | None, Query(description="Deployments having every one of these tags")] = None,
    paused: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[DeploymentOut]:
    return [deployment_out(d) for d in queries.list_deployments(rm, flow_name=flow_name, tags=tag or (), paused=paused,
                                                                  limit=limit)]


def _detail(store: EventStore, rm: ReadModelDep, deployment: Deployment) -> DeploymentOut:
    return deployment_out(deployment, detail=True, runs=queries.upcoming_runs(rm, deployment.id))


@router.get("/name/{flow_name}/{deployment_name}", response_model=DeploymentOut, responses=_NOT_FOUND)
def get_by_name(
    store: StoreDep, rm: ReadModelDep,
    flow_name: Annotated[str, Path(max_length=200)], deployment_name: Annotated[str, Path(max_length=200)],
) -> DeploymentOut:
    return _detail(store, rm, _live(store, f"{flow_name}/{deployment_name}"))


@router.get("/{deployment}", response_model=DeploymentOut, responses=_NOT_FOUND)
def get_deployment(store: StoreDep, rm: ReadModelDep, deployment: DeploymentRef) -> DeploymentOut:
    """The deployment, its next due times and its runs waiting to start."""
    return _detail(store, rm, _live(store, _ident(deployment)))


class Applied(BaseModel):
    outcome: str = Field(description="created, updated or unchanged")
    changed: list[str]
    deployment: DeploymentOut


async def _apply(store: EventStore, body: DeploymentIn, response: Response) -> Applied:
    options: dict[str, Any] = body.model_dump(exclude={"paused", "entrypoint"})
    options["schedules"] = list(body.schedules)
    spec = await to_thread.run_sync(lambda: build_spec_isolated(body.entrypoint, **options))
    result = await to_thread.run_sync(lambda: apply_deployment(store, spec, paused=body.paused, actor="api"))
    response.status_code = 201 if result.outcome == "created" else 200
    return Applied(outcome=result.outcome, changed=list(result.changed), deployment=deployment_out(result.deployment))


@write_router.post("", response_model=Applied, status_code=201,
                   responses={200: {"description": "updated, or unchanged"}, 422: {"description": "invalid"}})
async def create_deployment(store: StoreDep, body: DeploymentIn, response: Response) -> Applied:
    """Create a deployment, or update the one of that name (idempotent: the same definition
    again writes nothing). Its flow is loaded to check the parameters."""
    return await _apply(store, body, response)


class DeploymentPatch(BaseModel):
    """Fields to change; the others stay as they are."""

    model_config = DeploymentIn.model_config
    entrypoint: str | None = Field(default=None, min_length=3, max_length=1000)
    working_dir: str | None = Field(default=None, max_length=1000)
    parameters: dict[str, Any] | None = None
    schedules: list[Any] | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=100)
    work_pool: str | None = Field(default=None, max_length=200)
    work_queue: str | None = Field(default=None, max_length=200)
    concurrency_limit: int | None = Field(default=None, ge=1, le=10_000)
    description: str | None = Field(default=None, max_length=10_000)
    version: str | None = Field(default=None, max_length=200)
    paused: bool | None = None


@write_router.patch("/{deployment}", response_model=Applied, responses=_NOT_FOUND)
async def update_deployment(store: StoreDep, deployment: DeploymentRef, body: DeploymentPatch, response: Response) -> Applied:
    current = await to_thread.run_sync(_live, store, _ident(deployment))
    values = current.spec.model_dump(mode="json", exclude={"flow_name", "parameter_schema"})
    values.update(body.model_dump(mode="json", exclude_unset=True))
    merged = DeploymentIn.model_validate(values)
    return await _apply(store, merged, response)


@write_router.delete("/{deployment}", response_model=DeploymentOut, responses=_NOT_FOUND)
def remove_deployment(store: StoreDep, deployment: DeploymentRef) -> DeploymentOut:
    """Delete it: no more scheduled runs; its future unstarted ones are cancelled."""
    return deployment_out(delete_deployment(store, _ident(deployment), actor="api"))


@write_router.post("/{deployment}/pause", response_model=DeploymentOut, responses=_NOT_FOUND)
def pause(store: StoreDep, deployment: DeploymentRef) -> DeploymentOut:
    return deployment_out(pause_deployment(store, _ident(deployment), actor="api"))


@write_router.post("/{deployment}/resume", response_model=DeploymentOut, responses=_NOT_FOUND)
def resume(store: StoreDep, deployment: DeploymentRef) -> DeploymentOut:
    return deployment_out(resume_deployment(store, _ident(deployment), actor="api"))


class RunRequested(BaseModel):
    flow_run_id: str
    deployment_id: str
    scheduled_time: str


@write_router.post("/{deployment}/run", response_model=RunRequested, status_code=201,
                   responses={**_NOT_FOUND, 422: {"description": "parameters the flow does not take, or missing"}})
def run(store: StoreDep, deployment: DeploymentRef, body: RunIn | None = None) -> RunRequested:
    """Request a run of the deployment (now, or at `scheduled_time`); the runner of its work
    pool executes it (the server's own for `default`)."""
    body = body or RunIn()
    if body.scheduled_time is not None and body.scheduled_time.tzinfo is None:
        from ledgerflow.events.errors import InvalidEvent

        raise InvalidEvent("scheduled_time must carry a timezone (e.g. 2024-05-01T06:00:00Z)")
    event = request_deployment_run(store, _ident(deployment), parameters=body.parameters,
                                   scheduled_time=body.scheduled_time, actor="api")
    return RunRequested(flow_run_id=str(event.data["flow_run_id"]), deployment_id=_ident(deployment),
                        scheduled_time=str(event.data["scheduled_time"]))
