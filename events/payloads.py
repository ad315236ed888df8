"""The `data` of each event type the runtime writes: the contract between the runtime (which
writes these) and projections, automations and the API (which read them).

Every flow run is one stream `flow-run-<flow_run_id>`: its `flow-run.created`, its states, and
everything of its task runs (`task-run.created`, their states), logs and artifacts. A subflow
run has a stream of its own and names its parent task run and parent flow run. A task run a
replay reuses is one event, `task-run.Reused` carrying the fields of its `task-run.created`
too (`creates_task_run`): a replay of a long run writes one event per reused task, not two.

Writers build these models and store `model.as_data()`; readers call `parse_data(event)`.
All ids are UUID strings, all times ISO-8601 UTC strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledgerflow.events.model import StoredEvent
from ledgerflow.events.states import StateType, state_from_event_type

__all__ = [
    "ArtifactCreated",
    "ArtifactUpdated",
    "ErrorInfo",
    "FlowRunCreated",
    "FlowRunHeartbeat",
    "LogEmitted",
    "ResultRef",
    "StateChanged",
    "TaskRunCreated",
    "creates_task_run",
    "flow_run_stream",
    "is_wellformed",
    "parse_data",
]


def flow_run_stream(flow_run_id: Any) -> str:
    return f"flow-run-{flow_run_id}"


def creates_task_run(event_type: str, data: Mapping[str, Any]) -> bool:
    """Whether the event creates its task run: `task-run.created`, or a `task-run.Reused` that
    carries the creation's fields (the one event of a task run a replay reused; a reused run
    written before that has a `task-run.created` of its own and a plain `task-run.Reused`)."""
    return event_type == "task-run.created" or (event_type == "task-run.Reused" and "task_key" in data)


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    def as_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class FlowRunCreated(_Payload):
    """`flow-run.created`"""

    flow_run_id: str
    flow_name: str
    run_name: str
    parameters: dict[str, Any] = {}
    """JSON-safe rendering of the call's parameters (repr() where a value is not JSON)."""
    entrypoint: str | None = None
    """`package.module:function`, or `path/to/file.py:function` relative to `working_dir`:
    how another process loads the flow again (adopting a requested run, replay)."""
    working_dir: str | None = None
    """The folder the run started in; `entrypoint` is resolved from there."""
    work_pool: str | None = None
    """The work pool whose workers may execute a requested run."""
    tags: list[str] = []
    flow_version: str | None = None
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    root_flow_run_id: str | None = None
    deployment_id: str | None = None
    replay_of: str | None = None
    """The flow run this one replays (reusing its completed task results)."""


class TaskRunCreated(_Payload):
    """`task-run.created`"""

    task_run_id: str
    flow_run_id: str
    task_key: str
    """Stable identity of the task function (module + qualified name)."""
    task_name: str
    run_name: str
    occurrence: int
    """How many task runs of this task_key the flow run created before this one (0, 1, ...)."""
    input_hash: str | None = None
    """Hash of the task's inputs; None when they cannot be hashed."""
    upstream: list[str] = []
    """task_run_ids whose results flowed into this run's inputs (lineage)."""
    tags: list[str] = []
    parameters: dict[str, Any] = {}
    child_flow_run_id: str | None = None
    """Set when this task run stands for a subflow call."""


class ResultRef(_Payload):
    """Where a completed run's value is stored: inline in the event when it is small JSON
    (at most 512 bytes serialised), else in a content-addressed file of the result store."""

    persisted: bool
    inline: bool = False
    value: Any = None
    """The value itself when `inline`."""
    key: str | None = None
    """Content address under the result store (e.g. `<sha256>.json`)."""
    serializer: str | None = None
    """`json`, `json+types` (tagged JSON that restores tuples, sets, dates, ...) or `pickle`."""
    reason: str | None = None
    """Why it was not persisted (e.g. the value cannot be serialised)."""


class ErrorInfo(_Payload):
    type: str
    message: str
    traceback: str | None = None


class StateChanged(_Payload):
    """`flow-run.<StateName>` and `task-run.<StateName>` (see events/states.py)."""

    flow_run_id: str
    task_run_id: str | None = None
    """None for flow-run state events."""
    state_type: StateType
    state_name: str
    message: str | None = None
    attempt: int = 1
    """1 for the first run, 2 for the first retry, ..."""
    result: ResultRef | None = None
    error: ErrorInfo | None = None
    scheduled_time: str | None = None
    """When an AwaitingRetry / Scheduled run is due."""
    cache_key: str | None = None
    cached_from: str | None = None
    """task_run_id whose stored result a Cached or Reused state took."""
    entrypoint: str | None = None
    """On `flow-run.Scheduled` requests: what to run."""
    parameters: dict[str, Any] | None = None
    replay_of: str | None = None
    host: str | None = None
    pid: int | None = None
    process_started: str | None = None
    heartbeat_seconds: float | None = None
    """On `flow-run.Running` / `Retrying`: the process that runs the run (host name, pid, its
    start time, which tells a reused pid apart) and how often it appends `flow-run.heartbeat`
    (events/liveness.py)."""


class FlowRunHeartbeat(_Payload):
    """`flow-run.heartbeat`: the process running the flow run is alive (not a state change)."""

    flow_run_id: str


class LogEmitted(_Payload):
    """`log.emitted`"""

    flow_run_id: str
    task_run_id: str | None = None
    task_run_name: str | None = None
    level: int
    level_name: str
    logger: str
    message: str


class ArtifactCreated(_Payload):
    """`artifact.created`"""

    artifact_id: str
    flow_run_id: str | None = None
    task_run_id: str | None = None
    key: str | None = None
    artifact_type: str
    """`markdown`, `table`, `link`, `progress`, `image`."""
    description: str | None = None
    data: Any = None


class ArtifactUpdated(_Payload):
    """`artifact.updated` (progress artifacts)."""

    artifact_id: str
    flow_run_id: str | None = None
    data: Any = None
    description: str | None = None


_BY_TYPE: dict[str, type[_Payload]] = {
    "flow-run.created": FlowRunCreated,
    "flow-run.heartbeat": FlowRunHeartbeat,
    "task-run.created": TaskRunCreated,
    "log.emitted": LogEmitted,
    "artifact.created": ArtifactCreated,
    "artifact.updated": ArtifactUpdated,
}


@lru_cache(maxsize=256)
def _required(event_type: str) -> frozenset[str] | None:
    model = _BY_TYPE.get(event_type)
    if model is None and state_from_event_type(event_type):
        model = StateChanged
    if model is None:
        return None
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    if event_type.startswith("task-run.") and model is StateChanged:
        required.add("task_run_id")
    return frozenset(required)


def is_wellformed(event: StoredEvent) -> bool:
    """Whether a runtime event carries every field its type requires (cheap: keys only).

    Readers that fold the log skip what fails this rather than stop on it; the API refuses such
    events at ingest, but the store itself accepts any JSON object.
    """
    required = _required(event.type)
    return required is None or required <= event.data.keys()


def parse_data(event: StoredEvent) -> _Payload | None:
    """The typed payload of a runtime event; None for event types this module does not know."""
    model = _BY_TYPE.get(event.type)
    if model is None and state_from_event_type(event.type):
        model = StateChanged
    return model.model_validate(event.data) if model else None
