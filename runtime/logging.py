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

__all__ = ["flow_run_logger", "get_logger", "get_run_logger", "run_logger", "setup_for_runs", "task_run_logger"]

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
        detached: _Detached | None = getattr(record, "ledgerflow_detached", None)
        if flow_run is None and detached is None:
            return
        task_run = getattr(record, "ledgerflow_task_run", None)
        run_id = str(flow_run.flow_run.id) if flow_run is not None else detached.flow_run_id  # type: ignore[union-attr]
        data: dict[str, Any] = {
            "flow_run_id": run_id,
            "level": record.levelno,
            "level_name": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if not record.exc_info else self.format(record),
        }
        if task_run is not None:
            data["task_run_id"] = str(task_run.id)
            data["task_run_name"] = getattr(task_run, "name", None)
        if flow_run is not None:
            flow_run.emit("log.emitted", data)
        else:
            assert detached is not None
            detached.emit(data)


class _Detached:
    """Where a logger for a run given by id writes when that run's context is not at hand."""

    def __init__(self, flow_run_id: str) -> None:
        self.flow_run_id = flow_run_id

    def emit(self, data: dict[str, Any]) -> None:
        from ledgerflow.events import NewEvent
        from ledgerflow.events.payloads import flow_run_stream
        from ledgerflow.runtime import config

        config.current().writer.emit(flow_run_stream(self.flow_run_id), NewEvent(type="log.emitted", data=data))


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


def flow_run_logger(flow_run: Any, flow: Any = None) -> RunLogger:
    """A logger whose records go to the log of `flow_run` (anything with an `id`), from inside
    the run or not (a hook, a script inspecting runs) — Prefect's `flow_run_logger`."""
    context = flow_run_var.get()
    if context is not None and str(context.flow_run.id) == str(flow_run.id):
        return run_logger(context)
    return RunLogger(get_logger(), {"ledgerflow_detached": _Detached(str(flow_run.id))})


def task_run_logger(task_run: Any, task: Any = None, flow_run: Any = None, flow: Any = None) -> RunLogger:
    """A logger whose records go to the log of `task_run`'s flow run, naming the task run."""
    context = flow_run_var.get()
    owner = flow_run.id if flow_run is not None else getattr(task_run, "flow_run_id", None)
    if context is not None and (owner is None or str(context.flow_run.id) == str(owner)):
        return run_logger(context, task_run)
    if owner is None:
        raise ValueError("task_run_logger needs the task run's flow run: pass flow_run=")
    return RunLogger(get_logger(), {"ledgerflow_detached": _Detached(str(owner)), "ledgerflow_task_run": task_run})
