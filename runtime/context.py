"""What code running inside a flow or task can ask about its run (`get_run_context()`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledgerflow.events import EventMeta, NewEvent
from ledgerflow.events.model import new_id, trusted, utcnow
from ledgerflow.runtime.cache import RunCache

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ledgerflow.runtime.config import Runtime
    from ledgerflow.runtime.control import FlowRunControl
    from ledgerflow.runtime.flows import Flow
    from ledgerflow.runtime.replays import ReplayPlan
    from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner
    from ledgerflow.runtime.task_engine import TaskRun
    from ledgerflow.runtime.tasks import Task

__all__ = [
    "FlowRunContext",
    "MissingContextError",
    "RunInfo",
    "TaskRunContext",
    "current_tags",
    "get_run_context",
    "tags",
]


class MissingContextError(RuntimeError):
    pass


@dataclass(frozen=True)
class RunInfo:
    id: UUID
    name: str
    parameters: dict[str, Any]
    tags: tuple[str, ...] = ()
    attempt: int = 1


@dataclass
class FlowRunContext:
    flow: Flow[..., Any]
    flow_run: RunInfo
    stream: str
    runtime: Runtime
    task_runner: ThreadPoolTaskRunner
    meta: EventMeta
    log_prints: bool
    persist_result: bool | None
    control: FlowRunControl
    replay: ReplayPlan | None = None
    """Set when this run replays another: what its task calls may reuse."""
    run_cache: RunCache = field(default_factory=RunCache)
    """Cache keys that name this run (the DEFAULT cache policy's), kept in memory."""
    parent_flow_run_id: str | None = None
    scheduled_start_time: datetime | None = None
    deployment_id: str | None = None
    attempt: int = 0
    """The attempt running now (1, then 2 on the first retry, ...)."""
    occurrences: Counter[str] = field(default_factory=Counter)
    submitted: list[tuple[TaskRun, Future[Any]]] = field(default_factory=list)
    """Task runs handed to the task runner, so a crashing flow can account for those not started."""
    produced_by: dict[int, tuple[UUID, Any]] = field(default_factory=dict)
    """id(value) -> (task run that returned it, the value kept alive) for lineage by identity."""
    pauses: int = 0
    """How many times this execution called pause_flow_run / suspend_flow_run (their default keys)."""
    flow_run_id: str = field(init=False)
    """The run's id as events carry it."""

    def __post_init__(self) -> None:
        self.flow_run_id = str(self.flow_run.id)

    def emit(self, event_type: str, data: dict[str, Any]) -> UUID:
        """Queue an event of this run for the writer; return its id."""
        event_id = new_id()
        event = trusted(
            NewEvent, {"type": event_type, "data": data, "id": event_id, "meta": self.meta, "occurred": utcnow()}
        )
        self.runtime.writer.emit(self.stream, event)
        return event_id


@dataclass
class TaskRunContext:
    task: Task[..., Any]
    task_run: RunInfo
    flow_run: RunInfo
    flow_run_context: FlowRunContext
    log_prints: bool


flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("ledgerflow_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("ledgerflow_task_run", default=None)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The current task run's context inside a task, the flow run's inside a flow."""
    task = task_run_var.get()
    if task is not None:
        return task
    flow = flow_run_var.get()
    if flow is not None:
        return flow
    raise MissingContextError("get_run_context() was called outside a flow or task run")



_tags: ContextVar[frozenset[str]] = ContextVar("ledgerflow_tags", default=frozenset())


def current_tags() -> frozenset[str]:
    """The tags `with tags(...)` blocks around the current code add to runs created in them."""
    return _tags.get()


@contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add tags to every flow run and task run created inside the block (Prefect's `tags`)."""
    token = _tags.set(_tags.get() | frozenset(names))
    try:
        yield _tags.get()
    finally:
        _tags.reset(token)
