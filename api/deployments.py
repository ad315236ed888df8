"""How a deployment is shown, on the API and the command line alike (`DeploymentOut`), and
the request bodies both send (`DeploymentIn`, `RunIn`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events.deployments import Deployment
from ledgerflow.events.schedules import Schedule, slots
from ledgerflow.projections.models import FlowRun

__all__ = ["DeploymentIn", "DeploymentOut", "NextSlot", "RunIn", "ScheduleOut", "deployment_out", "next_slots"]


class DeploymentIn(BaseModel):
    """A deployment to create or update (`POST /api/deployments`): the flow is loaded from
    `entrypoint` in `working_dir` to check the parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The deployment's name, without the flow's")
    entrypoint: str = Field(min_length=3, max_length=1000, description="module:function or path/file.py:function")
    working_dir: str | None = Field(default=None, max_length=1000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[Schedule] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=100)
    work_pool: str | None = Field(default="default", max_length=200)
    work_queue: str | None = Field(default=None, max_length=200)
    concurrency_limit: int | None = Field(default=None, ge=1, le=10_000)
    description: str | None = Field(default=None, max_length=10_000)
    version: str | None = Field(default=None, max_length=200)
    paused: bool | None = None


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict, description="Over the deployment's own")
    scheduled_time: datetime | None = Field(default=None, description="When it is due (default: now)")


class ScheduleOut(BaseModel):
    schedule_id: str | None
    """None for an inactive schedule (or any schedule of a paused deployment)."""
    active: bool
    description: str
    schedule: dict[str, Any]


class NextSlot(BaseModel):
    time: datetime
    schedule_id: str


class DeploymentOut(BaseModel):
    id: str
    name: str
    flow_name: str
    deployment_name: str
    entrypoint: str
    working_dir: str | None
    parameters: dict[str, Any]
    parameter_schema: dict[str, Any] | None
    tags: list[str]
    work_pool: str | None
    work_queue: str | None
    schedules: list[ScheduleOut]
    concurrency_limit: int | None
    description: str | None
    version: str | None
    paused: bool
    created: datetime
    updated: datetime
    revision: int
    """The deployment stream's version."""
    next_slots: list[NextSlot] = []
    """The next due times of its active schedules (whether or not materialised yet)."""
    scheduled_runs: list[FlowRun] = []
    """Its runs waiting to start (inspect only)."""


def next_slots(deployment: Deployment, count: int = 5, now: datetime | None = None) -> list[NextSlot]:
    moment = now or datetime.now(UTC)
    found = [
        NextSlot(time=time, schedule_id=schedule_id)
        for schedule_id, schedule in deployment.active_schedules()
        for time in slots(schedule, moment, None, count)
    ]
    return sorted(found, key=lambda slot: slot.time)[:count]


def deployment_out(deployment: Deployment, *, detail: bool = False, runs: list[FlowRun] | None = None) -> DeploymentOut:
    spec = deployment.spec
    active = {id(schedule): schedule_id for schedule_id, schedule in deployment.active_schedules()}
    by_key = {deployment.schedule_key(s): sid for sid, s in deployment.active_schedules()}
    return DeploymentOut(
        id=deployment.id, name=spec.full_name, flow_name=spec.flow_name, deployment_name=spec.name,
        entrypoint=spec.entrypoint, working_dir=spec.working_dir, parameters=spec.parameters,
        parameter_schema=spec.parameter_schema, tags=spec.tags, work_pool=spec.work_pool, work_queue=spec.work_queue,
        schedules=[
            ScheduleOut(
                schedule_id=active.get(id(schedule)) or by_key.get(deployment.schedule_key(schedule))
                if schedule.active and not deployment.paused else None,
                active=schedule.active, description=schedule.describe(), schedule=schedule.model_dump(mode="json"),
            )
            for schedule in spec.schedules
        ],
        concurrency_limit=spec.concurrency_limit, description=spec.description, version=spec.version,
        paused=deployment.paused, created=deployment.created, updated=deployment.updated,
        revision=deployment.version, next_slots=next_slots(deployment) if detail else [],
        scheduled_runs=runs or [],
    )
