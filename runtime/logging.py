"""Run logging: `get_run_logger()`, print capture, and every record as a `log.emitted` event.

Records also go to the console (stderr) in a compact form, as Prefect users expect.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from typing import Any

from ledgerflow.runtime.context import (
    FlowRunContext,
    RunInfo,
    TaskRunContext,
    flow_run_var,
    task_run_var,
)

__all__ = ["get_logger", "get_run_logger", "run_logger", "setup_for_runs"]

_LOGGER = "ledgerflow.runs"
_setup_lock = threading.Lock()
_ready = False
_print = builtins.print


class RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one flow or task run."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return msg, kwargs


class EventLogHandler(logging.Handler):
    """Appends each record of a run as a `log.emitted` event to that run's stream."""

    def emit(self, record: logging.LogRecord) -> None:
        flow_run: FlowRunContext | None = getattr(record, "ledgerflow_flow_run", None)
        if flow_run is None:
            return
        task_run = getattr(record, "ledgerflow_task_run", None)
        data: dict[str, Any] = {
            "flow_run_id": str(flow_run.flow_run.id),
            "level": record.levelno,
            "level_name": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if not record.exc_info else self.format(record),
        }
        if task_run is not None:
            data["task_run_id"] = str(task_run.id)
        flow_run.emit("log.emitted", data)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        task_run = getattr(record, "ledgerflow_task_run", None)
        flow_run = getattr(record, "ledgerflow_flow_run", None)
        who = f"Task run {task_run.name!r}" if task_run else f"Flow run {flow_run.flow_run.name!r}" if flow_run else ""
        when = self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"
        line = f"{when} | {record.levelname:<7} | {who} - {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _setup() -> None:
    global _ready
    with _setup_lock:
        if _ready:
            return
        logger = logging.getLogger(_LOGGER)
        logger.setLevel(logging.INFO)
        logger.addHandler(EventLogHandler())
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(ConsoleFormatter())
        logger.addHandler(console)
        logger.propagate = False
        builtins.print = _print_to_run_log
        _ready = True


def get_logger() -> logging.Logger:
    _setup()
    return logging.getLogger(_LOGGER)


def get_run_logger() -> RunLogger:
    """The logger of the current task run, or of the flow run outside tasks."""
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError("get_run_logger() was called outside a flow or task run")
    task_run: TaskRunContext | None = task_run_var.get()
    return run_logger(flow_run, task_run.task_run if task_run else None)


def run_logger(flow_run: FlowRunContext, task_run: RunInfo | None = None) -> RunLogger:
    """The logger of a given run (the engine's own messages about it)."""
    return RunLogger(get_logger(), {"ledgerflow_flow_run": flow_run, "ledgerflow_task_run": task_run})


def _print_to_run_log(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    """`print` inside a run with `log_prints=True` becomes an INFO record of that run."""
    task_run = task_run_var.get()
    flow_run = flow_run_var.get()
    capture = task_run.log_prints if task_run is not None else bool(flow_run and flow_run.log_prints)
    if not capture or file not in (None, sys.stdout):
        _print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    get_run_logger().info((sep if sep is not None else " ").join(map(str, args)))


def setup_for_runs() -> None:
    """Called when a run starts: print capture and the event handler must be in place."""
    if not _ready:
        _setup()
