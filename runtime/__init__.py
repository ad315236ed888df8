"""The SDK users import: `from runtime import flow, task, get_run_logger, ...`.

Imports `events` only; never `projections`, `notifications` or `api`.
"""

from runtime.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from runtime.cache import task_input_hash
from runtime.context import get_run_context
from runtime.flows import Flow, flow
from runtime.futures import TaskFuture, unmapped, wait
from runtime.logging import get_run_logger
from runtime.signals import Abort, Fail, ParameterValidationError, Pause
from runtime.states import Cancelled, Completed, Crashed, Failed, State, StateType
from runtime.task_runners import ThreadPoolTaskRunner
from runtime.tasks import Task, exponential_backoff, task

__all__ = [
    "Abort",
    "Cancelled",
    "Completed",
    "Crashed",
    "Fail",
    "Failed",
    "Flow",
    "ParameterValidationError",
    "Pause",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "ThreadPoolTaskRunner",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "exponential_backoff",
    "flow",
    "get_run_context",
    "get_run_logger",
    "task",
    "task_input_hash",
    "unmapped",
    "update_progress_artifact",
    "wait",
]
