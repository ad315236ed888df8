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
from ledgerflow.runtime.custom_events import Event, emit_event
from ledgerflow.runtime.execute import ReplayError, RunAlreadyClaimed, RunNotAdoptable, execute_flow_run, replay
from ledgerflow.runtime.flows import Flow, flow
from ledgerflow.runtime.futures import TaskFuture, unmapped, wait
from ledgerflow.runtime.logging import get_run_logger
from ledgerflow.runtime.process_pool import ProcessPoolTaskRunner
from ledgerflow.runtime.pausing import (
    FlowPauseTimeout,
    RunInput,
    apause_flow_run,
    aresume_flow_run,
    asuspend_flow_run,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
)
from ledgerflow.runtime.signals import Abort, CancelledRun, Fail, ParameterValidationError, Pause
from ledgerflow.runtime.states import Cancelled, Completed, Crashed, Failed, State, StateType
from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner
from ledgerflow.runtime.tasks import Task, exponential_backoff, task
from ledgerflow.runtime.variables import Variable
from ledgerflow.runtime.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    atransaction,
    get_transaction,
    transaction,
)

__all__ = [
    "Abort",
    "Cancelled",
    "CancelledRun",
    "CommitMode",
    "Completed",
    "Crashed",
    "Event",
    "Fail",
    "Failed",
    "Flow",
    "FlowPauseTimeout",
    "IsolationLevel",
    "ParameterValidationError",
    "ProcessPoolTaskRunner",
    "Pause",
    "ReplayError",
    "RunAlreadyClaimed",
    "RunInput",
    "RunNotAdoptable",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "ThreadPoolTaskRunner",
    "Transaction",
    "TransactionState",
    "Variable",
    "apause_flow_run",
    "aresume_flow_run",
    "asuspend_flow_run",
    "atransaction",
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "emit_event",
    "execute_flow_run",
    "exponential_backoff",
    "flow",
    "get_run_context",
    "get_run_logger",
    "get_transaction",
    "pause_flow_run",
    "replay",
    "resume_flow_run",
    "suspend_flow_run",
    "task",
    "task_input_hash",
    "transaction",
    "unmapped",
    "update_progress_artifact",
    "wait",
]
