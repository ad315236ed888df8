"""The SDK users import: `from ledgerflow import flow, task, get_run_logger, ...` (re-exported by the `ledgerflow` package).

Imports `events` only; never `projections`, `notifications` or `api`.
"""

from ledgerflow.runtime.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from ledgerflow.runtime.cache import task_input_hash
from ledgerflow.runtime.context import get_run_context
from ledgerflow.runtime.deployments import Cron, Interval, RRule, RunnerDeployment, run_deployment
from ledgerflow.runtime.serving import serve
from ledgerflow.runtime.execute import ReplayError, RunAlreadyClaimed, RunNotAdoptable, execute_flow_run, replay
from ledgerflow.runtime.flows import Flow, flow
from ledgerflow.runtime.futures import TaskFuture, unmapped, wait
from ledgerflow.runtime.logging import get_run_logger
from ledgerflow.runtime.signals import Abort, CancelledRun, Fail, ParameterValidationError, Pause
from ledgerflow.runtime.states import Cancelled, Completed, Crashed, Failed, State, StateType
from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner
from ledgerflow.runtime.tasks import Task, exponential_backoff, task

__all__ = [
    "Abort",
    "Cancelled",
    "CancelledRun",
    "Completed",
    "Crashed",
    "Cron",
    "Fail",
    "Failed",
    "Flow",
    "Interval",
    "RRule",
    "ParameterValidationError",
    "Pause",
    "ReplayError",
    "RunAlreadyClaimed",
    "RunNotAdoptable",
    "RunnerDeployment",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "ThreadPoolTaskRunner",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "execute_flow_run",
    "exponential_backoff",
    "flow",
    "get_run_context",
    "get_run_logger",
    "replay",
    "run_deployment",
    "serve",
    "task",
    "task_input_hash",
    "unmapped",
    "update_progress_artifact",
    "wait",
]
