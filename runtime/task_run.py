"""The current task run, read where task code runs (Prefect's `prefect.runtime.task_run`).

    from ledgerflow.runtime import task_run
    task_run.id, task_run.name, task_run.task_name, task_run.parameters, task_run.run_count, ...

Outside a task run each attribute is None (or empty), as in Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledgerflow.events import load_settings
from ledgerflow.runtime.context import TaskRunContext, task_run_var

__all__ = ["api_url", "id", "name", "parameters", "run_count", "tags", "task_name", "ui_url"]


def _ui_url(context: TaskRunContext) -> str | None:
    base = load_settings().api_url
    return f"{base.rstrip('/')}/runs/{context.flow_run.id}#task-{context.task_run.id}" if base else None


_ATTRIBUTES: dict[str, Callable[[TaskRunContext], Any]] = {
    "id": lambda c: str(c.task_run.id),
    "name": lambda c: c.task_run.name,
    "task_name": lambda c: c.task.name,
    "parameters": lambda c: dict(c.task_run.parameters),
    "tags": lambda c: list(c.task_run.tags),
    "run_count": lambda c: c.task_run.attempt,
    "api_url": lambda c: load_settings().api_url,
    "ui_url": _ui_url,
}
_EMPTY: dict[str, Any] = {"parameters": {}, "tags": [], "run_count": 0}


def __getattr__(name: str) -> Any:
    getter = _ATTRIBUTES.get(name)
    if getter is None:
        raise AttributeError(f"{__name__} has no attribute {name!r}")
    context = task_run_var.get()
    if context is None:
        return _EMPTY.get(name)
    return getter(context)
