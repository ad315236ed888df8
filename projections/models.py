"""Typed results of the projection queries (what the CLI prints and the API returns)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ledgerflow.events.states import StateType

__all__ = [
    "AnalyticsGroup",
    "AnalyticsPeriod",
    "AnalyticsReport",
    "Artifact",
    "FlowRun",
    "FlowRunPage",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LogLine",
    "LogPage",
    "RunDetail",
    "RunHistory",
    "RunHistoryPeriod",
    "RunSnapshot",
    "StateRecord",
    "TaskRun",
]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class FlowRun(_Result):
    id: str
    flow_name: str | None
    run_name: str | None
    state_type: StateType | None
    state_name: str | None
    created: datetime
    start: datetime | None
    end: datetime | None
    duration: float | None
    """Seconds from the first Running state to the terminal state."""
    attempts: int
    parameters: dict[str, Any]
    tags: list[str]
    parent_flow_run_id: str | None
    parent_task_run_id: str | None
    deployment_id: str | None
    replay_of: str | None
    entrypoint: str | None
    error: str | None
    """The last error the run reported, `Type: message`."""
    scheduled_time: datetime | None = None
    """When a run waiting to start (Scheduled, Late, AwaitingRetry) is due."""
    work_pool: str | None = None


class TaskRun(_Result):
    id: str
    flow_run_id: str
    task_key: str | None
    task_name: str | None
    run_name: str | None
    occurrence: int | None
    state_type: StateType | None
    state_name: str | None
    created: datetime
    start: datetime | None
    end: datetime | None
    duration: float | None
    attempts: int
    parameters: dict[str, Any]
    tags: list[str]
    upstream: list[str]
    cached_from: str | None
    child_flow_run_id: str | None
    error: str | None


class FlowRunPage(_Result):
    items: list[FlowRun]
    next_cursor: str | None
    """Pass as `cursor` for the next page; None on the last page."""


class StateRecord(_Result):
    """One state a run went through, from its stream."""

    task_run_id: str | None
    state_type: StateType
    state_name: str
    occurred: datetime
    attempt: int
    message: str | None
    error: str | None
    traceback: str | None = None
    """The formatted traceback of a Failed (or Crashed) state's error."""


class RunDetail(_Result):
    flow_run: FlowRun
    task_runs: list[TaskRun]
    states: list[StateRecord]
    replays: list[str] = []
    """Ids of the runs that replay this one, oldest first."""


class LogLine(_Result):
    position: int
    """The event's place in the run's stream: the page cursor."""
    occurred: datetime
    task_run_id: str | None
    task_run_name: str | None = None
    """The name of the task run that wrote it (None: the flow run)."""
    level: int
    level_name: str
    logger: str
    message: str


class LogPage(_Result):
    items: list[LogLine]
    next_after: int | None
    """Pass as `after` for the next page; None when there is nothing more yet."""


class Artifact(_Result):
    id: str
    key: str | None
    artifact_type: str
    description: str | None
    data: Any
    task_run_id: str | None
    created: datetime
    updated: datetime


class LineageNode(_Result):
    id: str
    kind: Literal["flow_run", "task_run"]
    name: str | None
    flow_run_id: str | None
    """For a task run, the flow run it belongs to."""
    depth: int
    """Hops from the run asked about (0 for itself)."""


class LineageEdge(_Result):
    source: str
    target: str
    kind: Literal["upstream", "subflow", "replay", "cached"]
    """`upstream`: source's result flowed into target; `subflow`: source (flow run) called
    target; `replay`: target replays source; `cached`: target reused source's result."""


class LineageGraph(_Result):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class AnalyticsPeriod(_Result):
    start: datetime
    runs: int
    completed: int
    failed: int
    crashed: int
    cancelled: int = 0
    success_rate: float | None = None
    """completed / (completed + failed + crashed) in this period; None when none finished."""
    p50: float | None = None
    p95: float | None = None
    """Duration percentiles (seconds) of the runs that finished in this period."""


class AnalyticsGroup(_Result):
    dimension: Literal["flow", "deployment", "tag", "task"]
    value: str
    runs: int
    completed: int
    failed: int
    crashed: int
    cancelled: int
    success_rate: float | None
    """completed / (completed + failed + crashed); None when none finished."""
    p50: float | None
    p95: float | None
    max: float | None
    """Duration figures in seconds; percentiles come from histograms (within 5% or 1 ms)."""
    periods: list[AnalyticsPeriod]


class AnalyticsReport(_Result):
    since: datetime
    until: datetime
    grain: Literal["hour", "day"]
    groups: list[AnalyticsGroup]


class RunHistoryPeriod(_Result):
    start: datetime
    counts: dict[str, int]
    """Flow runs created in the period by their current state type (`COMPLETED`, `FAILED`,
    ...; `NONE` for runs that have no state yet)."""


class RunHistory(_Result):
    since: datetime
    until: datetime
    grain: Literal["minute", "hour", "day"]
    periods: list[RunHistoryPeriod]
    """Only periods that have runs, oldest first."""


class RunSnapshot(_Result):
    """A flow run and its task runs as they were at a point of the log."""

    as_of_cursor: str | None
    as_of_time: datetime | None
    events_folded: int
    flow_run: FlowRun | None
    task_runs: list[TaskRun]
