"""`get_client()`: the Python client for what users script most (Prefect's `get_client`).

    async with get_client() as client:                 # async, as in Prefect
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(state={"type": {"any_": ["FAILED"]}}))
    with get_client(sync_client=True) as client:       # sync
        client.set_flow_run_state(run_id, Cancelled(), force=True)

It reads flow runs, task runs and logs (with Prefect-shaped filters and sorts), one flow run or
task run, proposes a run's state (through the rule book, `events.transitions.decide`; `force`
skips it), cancels and resumes runs, reads deployments and requests their runs. It talks to the API server when `LEDGERFLOW_API_URL` is
set, and otherwise reads and writes the embedded store directly (the same projections the
server serves). Filters the server cannot apply are applied here, on the pages it returns.

This module may import the projections and the runtime; the runtime never imports it, and
`ledgerflow/__init__.py` exports `get_client` lazily.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, Self, TypeVar
from uuid import UUID

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events import EventStore, EventStoreError, StoredEvent, StoreUnavailable, load_settings, open_store
from ledgerflow.events import runs as run_cases
from ledgerflow.events.deployments import (
    DeploymentNotFound,
    InvalidParameters,
    deployment_id,
    read_deployment,
    request_deployment_run,
)
from ledgerflow.events.states import STATE_NAMES, StateType
from ledgerflow.projections import models
from ledgerflow.projections import queries
from ledgerflow.projections.errors import RunNotFound as UnknownRun
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.runtime import config
from ledgerflow.runtime.states import State

__all__ = [
    "DeploymentFilter",
    "DeploymentFilterId",
    "FlowFilterName",
    "FlowRunFilterDeploymentId",
    "FlowRunFilterEndTime",
    "FlowRunFilterExpectedStartTime",
    "FlowRunFilterId",
    "FlowRunFilterName",
    "FlowRunFilterParentTaskRunId",
    "FlowRunFilterStartTime",
    "FlowRunFilterState",
    "FlowRunFilterStateName",
    "FlowRunFilterStateType",
    "FlowRunFilterTags",
    "LogFilterFlowRunId",
    "LogFilterLevel",
    "LogFilterTaskRunId",
    "LogFilterTimestamp",
    "TaskRunFilterId",
    "TaskRunFilterName",
    "TaskRunFilterStartTime",
    "TaskRunFilterState",
    "TaskRunFilterTags",
    "Deployment",
    "FlowFilter",
    "FlowRun",
    "FlowRunFilter",
    "FlowRunSort",
    "LedgerflowClient",
    "Log",
    "LogFilter",
    "LogSort",
    "ObjectNotFound",
    "OrchestrationResult",
    "SetStateStatus",
    "SyncLedgerflowClient",
    "TaskRun",
    "TaskRunFilter",
    "TaskRunSort",
    "get_client",
]

_PAGE = 500
T = TypeVar("T")


class ObjectNotFound(LookupError):
    """No run with that id."""


class Deployment(BaseModel):
    """A deployment as Prefect's client shows it (`name` is the deployment's own name)."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    name: str
    flow_name: str
    entrypoint: str
    path: str | None
    parameters: dict[str, Any]
    tags: list[str]
    work_pool_name: str | None
    work_queue_name: str | None
    concurrency_limit: int | None
    paused: bool
    description: str | None
    version: str | None


# -- what the client returns ------------------------------------------------------------------


def _state(type_: StateType | None, name: str | None, when: datetime, message: str | None = None) -> State | None:
    if type_ is None or name is None:
        return None
    return State(type=type_, name=name, message=message, timestamp=when)


class FlowRun(BaseModel):
    """A flow run as Prefect's client shows it (field names as in `prefect.client.schemas`)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: UUID
    name: str | None
    flow_name: str | None
    state: State | None
    state_type: StateType | None
    state_name: str | None
    parameters: dict[str, Any]
    tags: list[str]
    deployment_id: str | None
    parent_task_run_id: str | None
    created: datetime
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: timedelta
    expected_start_time: datetime | None
    run_count: int
    work_pool_name: str | None
    replay_of: str | None
    error: str | None

    @classmethod
    def of(cls, run: models.FlowRun) -> FlowRun:
        return cls(
            id=UUID(run.id), name=run.run_name, flow_name=run.flow_name,
            state=_state(run.state_type, run.state_name, run.end or run.start or run.created, run.error),
            state_type=run.state_type, state_name=run.state_name, parameters=run.parameters, tags=run.tags,
            deployment_id=run.deployment_id, parent_task_run_id=run.parent_task_run_id, created=run.created,
            start_time=run.start, end_time=run.end, total_run_time=timedelta(seconds=run.duration or 0),
            expected_start_time=run.scheduled_time, run_count=run.attempts, work_pool_name=run.work_pool,
            replay_of=run.replay_of, error=run.error,
        )


class TaskRun(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: UUID
    name: str | None
    task_name: str | None
    task_key: str | None
    flow_run_id: UUID
    state: State | None
    state_type: StateType | None
    state_name: str | None
    tags: list[str]
    created: datetime
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: timedelta
    run_count: int
    error: str | None

    @classmethod
    def of(cls, run: models.TaskRun) -> TaskRun:
        return cls(
            id=UUID(run.id), name=run.run_name, task_name=run.task_name, task_key=run.task_key,
            flow_run_id=UUID(run.flow_run_id),
            state=_state(run.state_type, run.state_name, run.end or run.start or run.created, run.error),
            state_type=run.state_type, state_name=run.state_name, tags=run.tags, created=run.created,
            start_time=run.start, end_time=run.end, total_run_time=timedelta(seconds=run.duration or 0),
            run_count=run.attempts, error=run.error,
        )


class Log(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    level: int
    message: str
    timestamp: datetime
    flow_run_id: UUID
    task_run_id: UUID | None


class SetStateStatus(StrEnum):
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    WAIT = "WAIT"


class OrchestrationResult(BaseModel):
    """What `set_flow_run_state` / `resume_flow_run` got: ACCEPT with the state written, or
    REJECT / WAIT with the rule book's reason (`details["reason"]`, `details["delay_seconds"]`)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    status: SetStateStatus
    state: State | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# -- filters and sorts (Prefect's shapes; plain dicts work too) -------------------------------


class _Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _AnyOf(_Filter):
    any_: list[str] | None = None
    not_any_: list[str] | None = None

    def accepts(self, value: Any) -> bool:
        text = None if value is None else str(value)
        if self.any_ is not None and text not in [str(v) for v in self.any_]:
            return False
        return self.not_any_ is None or text not in [str(v) for v in self.not_any_]


class _Name(_AnyOf):
    like_: str | None = None

    def accepts(self, value: Any) -> bool:
        if self.like_ is not None and (value is None or self.like_.lower() not in str(value).lower()):
            return False
        return super().accepts(value)


class _Tags(_Filter):
    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None

    def accepts(self, tags: Sequence[str]) -> bool:
        if self.all_ is not None and not set(self.all_) <= set(tags):
            return False
        if self.any_ is not None and not set(self.any_) & set(tags):
            return False
        return self.is_null_ is None or self.is_null_ == (not tags)


class _Time(_Filter):
    before_: datetime | None = None
    after_: datetime | None = None
    is_null_: bool | None = None

    def accepts(self, value: datetime | None) -> bool:
        if self.is_null_ is not None and self.is_null_ != (value is None):
            return False
        if value is None:
            return self.before_ is None and self.after_ is None
        return (self.before_ is None or value <= self.before_) and (self.after_ is None or value >= self.after_)


class _State(_Filter):
    type: _AnyOf | None = None
    name: _AnyOf | None = None

    def accepts(self, state_type: StateType | None, state_name: str | None) -> bool:
        return (self.type is None or self.type.accepts(state_type.value if state_type else None)) and (
            self.name is None or self.name.accepts(state_name))

    def single(self) -> str | None:
        """The one state (type or name) the server can filter by, if there is exactly one."""
        if self.type is not None and self.type.any_ and len(self.type.any_) == 1 and self.name is None:
            return str(self.type.any_[0])
        if self.name is not None and self.name.any_ and len(self.name.any_) == 1 and self.type is None:
            return str(self.name.any_[0])
        return None


class FlowRunFilter(_Filter):
    id: _AnyOf | None = None
    name: _Name | None = None
    tags: _Tags | None = None
    deployment_id: _AnyOf | None = None
    state: _State | None = None
    start_time: _Time | None = None
    end_time: _Time | None = None
    expected_start_time: _Time | None = None
    parent_task_run_id: _AnyOf | None = None
    work_pool_name: _AnyOf | None = None

    def accepts(self, run: FlowRun) -> bool:
        return all((
            self.id is None or self.id.accepts(run.id),
            self.name is None or self.name.accepts(run.name),
            self.tags is None or self.tags.accepts(run.tags),
            self.deployment_id is None or self.deployment_id.accepts(run.deployment_id),
            self.state is None or self.state.accepts(run.state_type, run.state_name),
            self.start_time is None or self.start_time.accepts(run.start_time),
            self.end_time is None or self.end_time.accepts(run.end_time),
            self.expected_start_time is None or self.expected_start_time.accepts(run.expected_start_time),
            self.parent_task_run_id is None or self.parent_task_run_id.accepts(run.parent_task_run_id),
            self.work_pool_name is None or self.work_pool_name.accepts(run.work_pool_name),
        ))


class FlowFilter(_Filter):
    name: _Name | None = None


class DeploymentFilter(_Filter):
    id: _AnyOf | None = None


class TaskRunFilter(_Filter):
    id: _AnyOf | None = None
    name: _Name | None = None
    tags: _Tags | None = None
    state: _State | None = None
    flow_run_id: _AnyOf | None = None
    start_time: _Time | None = None

    def accepts(self, run: TaskRun) -> bool:
        return all((
            self.id is None or self.id.accepts(run.id),
            self.name is None or self.name.accepts(run.name) or self.name.accepts(run.task_name),
            self.tags is None or self.tags.accepts(run.tags),
            self.state is None or self.state.accepts(run.state_type, run.state_name),
            self.flow_run_id is None or self.flow_run_id.accepts(run.flow_run_id),
            self.start_time is None or self.start_time.accepts(run.start_time),
        ))


class _Level(_Filter):
    ge_: int | None = None
    le_: int | None = None


class LogFilter(_Filter):
    level: _Level | None = None
    timestamp: _Time | None = None
    flow_run_id: _AnyOf | None = None
    task_run_id: _AnyOf | None = None

    def accepts(self, log: Log) -> bool:
        level = self.level
        return all((
            level is None or ((level.ge_ is None or log.level >= level.ge_) and (level.le_ is None or log.level <= level.le_)),
            self.timestamp is None or self.timestamp.accepts(log.timestamp),
            self.flow_run_id is None or self.flow_run_id.accepts(log.flow_run_id),
            self.task_run_id is None or self.task_run_id.accepts(log.task_run_id),
        ))


# Prefect's names for the parts of the filters (`prefect.client.schemas.filters`).
FlowRunFilterId = FlowRunFilterDeploymentId = FlowRunFilterStateType = FlowRunFilterStateName = _AnyOf
FlowRunFilterParentTaskRunId = DeploymentFilterId = TaskRunFilterId = LogFilterFlowRunId = LogFilterTaskRunId = _AnyOf
FlowRunFilterName = FlowFilterName = TaskRunFilterName = _Name
FlowRunFilterTags = TaskRunFilterTags = _Tags
FlowRunFilterStartTime = FlowRunFilterEndTime = FlowRunFilterExpectedStartTime = _Time
TaskRunFilterStartTime = LogFilterTimestamp = _Time
FlowRunFilterState = TaskRunFilterState = _State
LogFilterLevel = _Level


class FlowRunSort(StrEnum):
    ID_DESC = "ID_DESC"
    START_TIME_ASC = "START_TIME_ASC"
    START_TIME_DESC = "START_TIME_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    END_TIME_DESC = "END_TIME_DESC"


class TaskRunSort(StrEnum):
    ID_DESC = "ID_DESC"
    EXPECTED_START_TIME_ASC = "EXPECTED_START_TIME_ASC"
    EXPECTED_START_TIME_DESC = "EXPECTED_START_TIME_DESC"
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    END_TIME_DESC = "END_TIME_DESC"


class LogSort(StrEnum):
    TIMESTAMP_ASC = "TIMESTAMP_ASC"
    TIMESTAMP_DESC = "TIMESTAMP_DESC"


def _sorted(items: list[T], sort: str, start: Callable[[T], datetime | None], end: Callable[[T], datetime | None],
            name: Callable[[T], str | None], created: Callable[[T], datetime]) -> list[T]:
    def when(value: datetime | None) -> float:
        return value.timestamp() if value is not None else float("-inf")

    keys: dict[str, tuple[Callable[[T], Any], bool]] = {
        "ID_DESC": (lambda i: when(created(i)), True),
        "START_TIME_ASC": (lambda i: when(start(i)), False),
        "START_TIME_DESC": (lambda i: when(start(i)), True),
        "EXPECTED_START_TIME_ASC": (lambda i: when(start(i) or created(i)), False),
        "EXPECTED_START_TIME_DESC": (lambda i: when(start(i) or created(i)), True),
        "NAME_ASC": (lambda i: name(i) or "", False),
        "NAME_DESC": (lambda i: name(i) or "", True),
        "END_TIME_DESC": (lambda i: when(end(i)), True),
    }
    key, reverse = keys[str(sort)]
    return sorted(items, key=key, reverse=reverse)


def _model(kind: type[BaseModel], value: Any) -> Any:
    return kind.model_validate(value) if isinstance(value, dict) else value


# -- where the client reads and writes ------------------------------------------------------


class _Backend(Protocol):
    def flow_run_page(self, filters: dict[str, Any], cursor: str | None) -> models.FlowRunPage: ...
    def run_detail(self, flow_run_id: str) -> models.RunDetail: ...
    def task_run(self, task_run_id: str) -> models.TaskRun: ...
    def log_page(self, flow_run_id: str, after: int | None, min_level: int) -> models.LogPage: ...
    def log_events(self, after: str | None) -> tuple[list[StoredEvent], str]: ...
    def set_state(self, flow_run_id: str, name: str, message: str | None, force: bool) -> StoredEvent: ...
    def cancel(self, flow_run_id: str) -> StoredEvent: ...
    def resume(self, flow_run_id: str, run_input: dict[str, Any] | None) -> StoredEvent: ...
    def deployment(self, ident: str) -> Deployment: ...
    def run_deployment(self, ident: str, parameters: dict[str, Any] | None, scheduled_time: datetime | None) -> str: ...
    def close(self) -> None: ...


class _Embedded:
    """The local store and its projections."""

    def __init__(self, store: EventStore, owned: bool) -> None:
        self.store = store
        self.owned = owned
        self.read_model = ReadModel(self.store)

    def flow_run_page(self, filters: dict[str, Any], cursor: str | None) -> models.FlowRunPage:
        return queries.list_flow_runs(self.read_model, limit=_PAGE, cursor=cursor, **filters)

    def run_detail(self, flow_run_id: str) -> models.RunDetail:
        return queries.get_run(self.read_model, flow_run_id)

    def task_run(self, task_run_id: str) -> models.TaskRun:
        return queries.get_task_run(self.read_model, task_run_id)

    def log_page(self, flow_run_id: str, after: int | None, min_level: int) -> models.LogPage:
        return queries.run_logs(self.read_model, flow_run_id, min_level=min_level, after=after, limit=1000)

    def log_events(self, after: str | None) -> tuple[list[StoredEvent], str]:
        page = self.store.read_page(after=after, limit=1000, types=["log.emitted"])
        return page.events, page.next_after

    def set_state(self, flow_run_id: str, name: str, message: str | None, force: bool) -> StoredEvent:
        return run_cases.propose_flow_run_state(self.store, flow_run_id, name, message=message, force=force, actor="client")

    def cancel(self, flow_run_id: str) -> StoredEvent:
        return run_cases.cancel_flow_run(self.store, flow_run_id, actor="client")

    def resume(self, flow_run_id: str, run_input: dict[str, Any] | None) -> StoredEvent:
        return run_cases.resume_flow_run(self.store, flow_run_id, run_input, actor="client")

    def deployment(self, ident: str) -> Deployment:
        found = read_deployment(self.store, ident)
        if found is None or found.deleted:
            raise DeploymentNotFound(ident)
        spec = found.spec
        return Deployment(id=UUID(found.id), name=spec.name, flow_name=spec.flow_name, entrypoint=spec.entrypoint,
                          path=spec.working_dir, parameters=spec.parameters, tags=spec.tags,
                          work_pool_name=spec.work_pool, work_queue_name=spec.work_queue,
                          concurrency_limit=spec.concurrency_limit, paused=found.paused,
                          description=spec.description, version=spec.version)

    def run_deployment(self, ident: str, parameters: dict[str, Any] | None, scheduled_time: datetime | None) -> str:
        event = request_deployment_run(self.store, ident, parameters=parameters, scheduled_time=scheduled_time,
                                       actor="client")
        return str(event.data["flow_run_id"])

    def close(self) -> None:
        if self.owned:
            self.store.close()


class _Remote:
    """The API server (`LEDGERFLOW_API_URL`)."""

    def __init__(self, api_url: str, api_key: str | None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=30.0)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.is_success:
            return orjson.loads(response.content)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = {"detail": response.text[:200]}
        detail = str(body.get("detail", response.text[:200]))
        if response.status_code == 404 and path.startswith("/api/deployments/"):
            raise DeploymentNotFound(path.split("/")[3])
        if response.status_code == 422 and path.startswith("/api/deployments/"):
            raise InvalidParameters(detail)
        if response.status_code == 404:
            raise run_cases.RunNotFound(path.split("/")[3] if path.count("/") >= 3 else path)
        if response.status_code == 409:
            if body.get("until"):
                raise run_cases.RunNotDue(detail, datetime.fromisoformat(body["until"]))
            raise run_cases.RunStateConflict(detail)
        if response.status_code == 422 and path.endswith("/resume"):
            raise run_cases.InvalidRunInput(detail)
        raise EventStoreError(f"the API server refused {method} {path} (HTTP {response.status_code}): {detail}")

    def flow_run_page(self, filters: dict[str, Any], cursor: str | None) -> models.FlowRunPage:
        params: dict[str, Any] = {"limit": _PAGE, "cursor": cursor}
        for name, value in filters.items():
            params["tag" if name == "tags" else name] = value
        params = {k: v for k, v in params.items() if v not in (None, (), [])}
        return models.FlowRunPage.model_validate(self._call("GET", "/api/flow-runs", params=params))

    def run_detail(self, flow_run_id: str) -> models.RunDetail:
        return models.RunDetail.model_validate(self._call("GET", f"/api/flow-runs/{flow_run_id}"))

    def task_run(self, task_run_id: str) -> models.TaskRun:
        return models.TaskRun.model_validate(self._call("GET", f"/api/task-runs/{task_run_id}"))

    def log_page(self, flow_run_id: str, after: int | None, min_level: int) -> models.LogPage:
        params = {"min_level": min_level, "limit": 1000, **({"after": after} if after is not None else {})}
        return models.LogPage.model_validate(self._call("GET", f"/api/flow-runs/{flow_run_id}/logs", params=params))

    def log_events(self, after: str | None) -> tuple[list[StoredEvent], str]:
        params: dict[str, Any] = {"type": "log.emitted", "limit": 1000, **({"after": after} if after else {})}
        page = self._call("GET", "/api/events", params=params)
        return [StoredEvent.model_validate(e) for e in page["events"]], str(page["next_after"])

    def set_state(self, flow_run_id: str, name: str, message: str | None, force: bool) -> StoredEvent:
        body = {"name": name, "message": message, "force": force}
        return _event(self._call("POST", f"/api/flow-runs/{flow_run_id}/set-state", json=body))

    def cancel(self, flow_run_id: str) -> StoredEvent:
        return _event(self._call("POST", f"/api/flow-runs/{flow_run_id}/cancel", json={}))

    def resume(self, flow_run_id: str, run_input: dict[str, Any] | None) -> StoredEvent:
        return _event(self._call("POST", f"/api/flow-runs/{flow_run_id}/resume", json={"run_input": run_input}))

    def deployment(self, ident: str) -> Deployment:
        body = self._call("GET", f"/api/deployments/{ident}", params={})
        return Deployment(id=UUID(body["id"]), name=body["deployment_name"], flow_name=body["flow_name"],
                          entrypoint=body["entrypoint"], path=body["working_dir"], parameters=body["parameters"],
                          tags=body["tags"], work_pool_name=body["work_pool"], work_queue_name=body["work_queue"],
                          concurrency_limit=body["concurrency_limit"], paused=body["paused"],
                          description=body["description"], version=body["version"])

    def run_deployment(self, ident: str, parameters: dict[str, Any] | None, scheduled_time: datetime | None) -> str:
        body: dict[str, Any] = {"parameters": parameters or {}}
        if scheduled_time is not None:
            body["scheduled_time"] = scheduled_time.isoformat()
        return str(self._call("POST", f"/api/deployments/{ident}/run", json=body)["flow_run_id"])

    def close(self) -> None:
        self.http.close()


def _event(data: dict[str, Any]) -> StoredEvent:
    return StoredEvent.model_validate({**data, "meta": data.get("meta") or {}})


# -- the clients ----------------------------------------------------------------------------


def _server_filters(flow_run_filter: FlowRunFilter | None, flow_filter: FlowFilter | None,
                    deployment_filter: DeploymentFilter | None) -> dict[str, Any]:
    """The part of the filters the run query applies itself (one value each)."""
    found: dict[str, Any] = {}
    if flow_filter is not None and flow_filter.name is not None and flow_filter.name.any_ and len(flow_filter.name.any_) == 1:
        found["flow_name"] = flow_filter.name.any_[0]
    if flow_run_filter is not None:
        if flow_run_filter.state is not None and (single := flow_run_filter.state.single()) is not None:
            found["state"] = single
        if flow_run_filter.tags is not None and flow_run_filter.tags.all_:
            found["tags"] = list(flow_run_filter.tags.all_)
    ids = deployment_filter.id.any_ if deployment_filter is not None and deployment_filter.id is not None else None
    if ids and len(ids) == 1:
        found["deployment_id"] = str(ids[0])
    return found


def _state_name(state: State | str) -> str:
    name = state if isinstance(state, str) else state.name
    if name not in STATE_NAMES:
        raise ValueError(f"unknown state name {name!r}: use one of {', '.join(STATE_NAMES)}")
    return name


def _result(stored: StoredEvent) -> OrchestrationResult:
    name = stored.type.partition(".")[2]
    return OrchestrationResult(status=SetStateStatus.ACCEPT,
                               state=State(type=STATE_NAMES[name], name=name, message=stored.data.get("message"),
                                           timestamp=stored.occurred))


class SyncLedgerflowClient:
    """The synchronous client (`get_client(sync_client=True)`); use it as a context manager."""

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    # -- flow runs --------------------------------------------------------------------------

    def read_flow_run(self, flow_run_id: UUID | str) -> FlowRun:
        """One flow run; ObjectNotFound if there is none with this id."""
        try:
            return FlowRun.of(self._backend.run_detail(str(flow_run_id)).flow_run)
        except (UnknownRun, run_cases.RunNotFound):
            raise ObjectNotFound(f"flow run {flow_run_id} not found") from None

    def read_flow_runs(
        self,
        *,
        flow_filter: FlowFilter | dict[str, Any] | None = None,
        flow_run_filter: FlowRunFilter | dict[str, Any] | None = None,
        task_run_filter: TaskRunFilter | dict[str, Any] | None = None,
        deployment_filter: DeploymentFilter | dict[str, Any] | None = None,
        sort: FlowRunSort | str = FlowRunSort.ID_DESC,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs matching every filter given, sorted, `offset` skipped, at most `limit`."""
        runs_f: FlowRunFilter | None = _model(FlowRunFilter, flow_run_filter)
        flows_f: FlowFilter | None = _model(FlowFilter, flow_filter)
        deployments_f: DeploymentFilter | None = _model(DeploymentFilter, deployment_filter)
        tasks_f: TaskRunFilter | None = _model(TaskRunFilter, task_run_filter)
        wanted = None if limit is None else offset + limit
        newest_first = str(sort) == FlowRunSort.ID_DESC
        found: list[FlowRun] = []
        for run in self._flow_runs(_server_filters(runs_f, flows_f, deployments_f)):
            if runs_f is not None and not runs_f.accepts(run):
                continue
            if flows_f is not None and flows_f.name is not None and not flows_f.name.accepts(run.flow_name):
                continue
            if deployments_f is not None and deployments_f.id is not None and not deployments_f.id.accepts(run.deployment_id):
                continue
            if tasks_f is not None and not any(tasks_f.accepts(t) for t in self._task_runs_of(run.id)):
                continue
            found.append(run)
            if newest_first and wanted is not None and len(found) >= wanted:
                break
        ordered = _sorted(found, str(sort), lambda r: r.start_time, lambda r: r.end_time, lambda r: r.name,
                          lambda r: r.created)
        return ordered[offset:wanted]

    def _flow_runs(self, filters: dict[str, Any]) -> Iterator[FlowRun]:
        cursor: str | None = None
        while True:
            page = self._backend.flow_run_page(filters, cursor)
            yield from (FlowRun.of(run) for run in page.items)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def set_flow_run_state(self, flow_run_id: UUID | str, state: State | str, force: bool = False) -> OrchestrationResult:
        """Propose `state` (its name) for the run: ACCEPT if the rule book allows it now
        (always with `force`), REJECT with the reason, or WAIT until the run is due."""
        name = _state_name(state)
        message = None if isinstance(state, str) else state.message
        try:
            return _result(self._backend.set_state(str(flow_run_id), name, message, force))
        except run_cases.RunNotDue as exc:
            delay = max(0.0, (exc.until - datetime.now(exc.until.tzinfo)).total_seconds())
            return OrchestrationResult(status=SetStateStatus.WAIT, details={"reason": str(exc), "delay_seconds": delay})
        except run_cases.RunNotFound:
            raise ObjectNotFound(f"flow run {flow_run_id} not found") from None
        except run_cases.RunStateConflict as exc:
            return OrchestrationResult(status=SetStateStatus.REJECT, details={"reason": str(exc)})

    def cancel_flow_run(self, flow_run_id: UUID | str) -> OrchestrationResult:
        """Cancelled if it has not started, else Cancelling (its engine stops it)."""
        try:
            return _result(self._backend.cancel(str(flow_run_id)))
        except run_cases.RunNotFound:
            raise ObjectNotFound(f"flow run {flow_run_id} not found") from None
        except run_cases.RunStateConflict as exc:
            return OrchestrationResult(status=SetStateStatus.REJECT, details={"reason": str(exc)})

    def resume_flow_run(self, flow_run_id: UUID | str, run_input: dict[str, Any] | None = None) -> OrchestrationResult:
        """Resume a paused or suspended run (with the input it waits for)."""
        try:
            return _result(self._backend.resume(str(flow_run_id), run_input))
        except run_cases.RunNotFound:
            raise ObjectNotFound(f"flow run {flow_run_id} not found") from None
        except run_cases.RunStateConflict as exc:
            return OrchestrationResult(status=SetStateStatus.REJECT, details={"reason": str(exc)})

    # -- task runs and logs ------------------------------------------------------------------

    def read_task_run(self, task_run_id: UUID | str) -> TaskRun:
        try:
            return TaskRun.of(self._backend.task_run(str(task_run_id)))
        except (UnknownRun, run_cases.RunNotFound):
            raise ObjectNotFound(f"task run {task_run_id} not found") from None

    def _task_runs_of(self, flow_run_id: UUID | str) -> list[TaskRun]:
        return [TaskRun.of(t) for t in self._backend.run_detail(str(flow_run_id)).task_runs]

    def read_task_runs(
        self,
        *,
        flow_filter: FlowFilter | dict[str, Any] | None = None,
        flow_run_filter: FlowRunFilter | dict[str, Any] | None = None,
        task_run_filter: TaskRunFilter | dict[str, Any] | None = None,
        deployment_filter: DeploymentFilter | dict[str, Any] | None = None,
        sort: TaskRunSort | str = TaskRunSort.ID_DESC,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TaskRun]:
        """Task runs of the flow runs the flow-run filters select, matching `task_run_filter`."""
        tasks_f: TaskRunFilter | None = _model(TaskRunFilter, task_run_filter)
        runs_f: FlowRunFilter | None = _model(FlowRunFilter, flow_run_filter)
        if runs_f is None and tasks_f is not None and tasks_f.flow_run_id is not None and tasks_f.flow_run_id.any_:
            runs_f = FlowRunFilter(id=_AnyOf(any_=[str(i) for i in tasks_f.flow_run_id.any_]))
        found: list[TaskRun] = []
        for run in self.read_flow_runs(flow_filter=flow_filter, flow_run_filter=runs_f, deployment_filter=deployment_filter):
            found += [t for t in self._task_runs_of(run.id) if tasks_f is None or tasks_f.accepts(t)]
        ordered = _sorted(found, str(sort), lambda t: t.start_time, lambda t: t.end_time, lambda t: t.name,
                          lambda t: t.created)
        return ordered[offset:None if limit is None else offset + limit]

    def read_logs(
        self,
        log_filter: LogFilter | dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        sort: LogSort | str = LogSort.TIMESTAMP_ASC,
    ) -> list[Log]:
        """Log lines matching the filter (of the given flow runs, or of every run)."""
        logs_f: LogFilter | None = _model(LogFilter, log_filter)
        min_level = logs_f.level.ge_ if logs_f is not None and logs_f.level is not None and logs_f.level.ge_ else 0
        found: list[Log] = []
        run_ids = logs_f.flow_run_id.any_ if logs_f is not None and logs_f.flow_run_id is not None else None
        if run_ids:
            for run_id in run_ids:
                found += self._logs_of(str(run_id), min_level)
        else:
            after: str | None = None
            while True:
                events, next_after = self._backend.log_events(after)
                found += [_log(e.data, e.occurred) for e in events if e.data.get("flow_run_id")]
                if not events or next_after == after:
                    break
                after = next_after
        found = [log for log in found if logs_f is None or logs_f.accepts(log)]
        found.sort(key=lambda log: log.timestamp, reverse=str(sort) == LogSort.TIMESTAMP_DESC)
        return found[offset:None if limit is None else offset + limit]

    def _logs_of(self, flow_run_id: str, min_level: int) -> list[Log]:
        lines: list[Log] = []
        after: int | None = None
        while True:
            try:
                page = self._backend.log_page(flow_run_id, after, min_level)
            except (UnknownRun, run_cases.RunNotFound):
                return lines
            lines += [Log(name=line.logger, level=line.level, message=line.message, timestamp=line.occurred,
                          flow_run_id=UUID(flow_run_id), task_run_id=UUID(line.task_run_id) if line.task_run_id else None)
                      for line in page.items]
            if not page.items or page.next_after is None or page.next_after == after:
                return lines
            after = page.next_after

    # -- deployments -------------------------------------------------------------------------

    def read_deployment(self, deployment_id: UUID | str) -> Deployment:
        """One deployment by id (or `flow/deployment` name); ObjectNotFound if there is none."""
        try:
            return self._backend.deployment(_deployment_ref(deployment_id))
        except DeploymentNotFound:
            raise ObjectNotFound(f"deployment {deployment_id} not found") from None

    def read_deployment_by_name(self, name: str) -> Deployment:
        """One deployment by its `flow-name/deployment-name`."""
        if "/" not in name:
            raise ValueError(f"{name!r} is not a deployment name: use 'flow-name/deployment-name'")
        return self.read_deployment(name)

    def create_flow_run_from_deployment(
        self,
        deployment_id: UUID | str,
        *,
        parameters: dict[str, Any] | None = None,
        state: State | None = None,
        wait_seconds: float = 10.0,
    ) -> FlowRun:
        """Request a run of the deployment, with `parameters` over its own, now or at the
        `scheduled_time` of a Scheduled `state`; the run as its views show it. The deployment's
        work pool runs it. InvalidParameters if the flow does not take them."""
        if state is not None and not state.is_scheduled():
            raise ValueError(f"a deployment's run starts Scheduled, not {state.name}")
        at = state.state_details.scheduled_time if state is not None else None
        try:
            run_id = self._backend.run_deployment(_deployment_ref(deployment_id), parameters, at)
        except DeploymentNotFound:
            raise ObjectNotFound(f"deployment {deployment_id} not found") from None
        deadline = time.monotonic() + wait_seconds
        while True:  # a server's views follow the log a moment later
            try:
                return self.read_flow_run(run_id)
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _deployment_ref(ident: UUID | str) -> str:
    text = str(ident)
    return str(deployment_id(text)) if "/" in text else text


def _log(data: dict[str, Any], occurred: datetime) -> Log:
    task_run_id = data.get("task_run_id")
    return Log(name=str(data.get("logger", "")), level=int(data.get("level", 0)), message=str(data.get("message", "")),
               timestamp=occurred, flow_run_id=UUID(str(data["flow_run_id"])),
               task_run_id=UUID(str(task_run_id)) if task_run_id else None)


class LedgerflowClient:
    """The async client (`async with get_client() as client:`): each method awaits the sync
    client's on a worker thread."""

    def __init__(self, backend: _Backend) -> None:
        self._sync = SyncLedgerflowClient(backend)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._sync.close)

    async def read_flow_run(self, flow_run_id: UUID | str) -> FlowRun:
        return await asyncio.to_thread(self._sync.read_flow_run, flow_run_id)

    async def read_flow_runs(self, **options: Any) -> list[FlowRun]:
        return await asyncio.to_thread(lambda: self._sync.read_flow_runs(**options))

    async def read_task_run(self, task_run_id: UUID | str) -> TaskRun:
        return await asyncio.to_thread(self._sync.read_task_run, task_run_id)

    async def read_task_runs(self, **options: Any) -> list[TaskRun]:
        return await asyncio.to_thread(lambda: self._sync.read_task_runs(**options))

    async def read_logs(self, log_filter: LogFilter | dict[str, Any] | None = None, limit: int | None = None,
                        offset: int = 0, sort: LogSort | str = LogSort.TIMESTAMP_ASC) -> list[Log]:
        return await asyncio.to_thread(self._sync.read_logs, log_filter, limit, offset, sort)

    async def set_flow_run_state(self, flow_run_id: UUID | str, state: State | str, force: bool = False) -> OrchestrationResult:
        return await asyncio.to_thread(self._sync.set_flow_run_state, flow_run_id, state, force)

    async def cancel_flow_run(self, flow_run_id: UUID | str) -> OrchestrationResult:
        return await asyncio.to_thread(self._sync.cancel_flow_run, flow_run_id)

    async def resume_flow_run(self, flow_run_id: UUID | str, run_input: dict[str, Any] | None = None) -> OrchestrationResult:
        return await asyncio.to_thread(self._sync.resume_flow_run, flow_run_id, run_input)

    async def read_deployment(self, deployment_id: UUID | str) -> Deployment:
        return await asyncio.to_thread(self._sync.read_deployment, deployment_id)

    async def read_deployment_by_name(self, name: str) -> Deployment:
        return await asyncio.to_thread(self._sync.read_deployment_by_name, name)

    async def create_flow_run_from_deployment(self, deployment_id: UUID | str, **options: Any) -> FlowRun:
        return await asyncio.to_thread(lambda: self._sync.create_flow_run_from_deployment(deployment_id, **options))


def get_client(sync_client: bool = False) -> Any:
    """A client of the API server (`LEDGERFLOW_API_URL`) or, without one, of the local store:
    async by default (`async with get_client() as client`), sync with `sync_client=True`."""
    backend = _backend()
    return SyncLedgerflowClient(backend) if sync_client else LedgerflowClient(backend)


def _backend() -> _Backend:
    installed = config.installed()
    if installed is not None and installed.store is not None:
        return _Embedded(installed.store, owned=False)  # this process's runs' store (a test harness)
    settings = load_settings()
    if settings.api_url:
        return _Remote(settings.api_url, settings.api_key)
    return _Embedded(open_store(settings.store_url), owned=True)
