"""The current flow run, read where flow or task code runs (Prefect's `prefect.runtime.flow_run`).

    from ledgerflow.runtime import flow_run
    flow_run.id, flow_run.name, flow_run.parameters, flow_run.scheduled_start_time, ...

Outside a flow run each attribute is None (or empty), as in Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledgerflow.events import load_settings
from ledgerflow.runtime.context import FlowRunContext, flow_run_var

__all__ = [
    "api_url",
    "deployment_id",
    "flow_name",
    "flow_version",
    "id",
    "job_variables",
    "name",
    "parameters",
    "parent_deployment_id",
    "parent_flow_run_id",
    "root_flow_run_id",
    "run_count",
    "scheduled_start_time",
    "tags",
    "ui_url",
]


def _api_url(context: FlowRunContext) -> str | None:
    return load_settings().api_url


def _ui_url(context: FlowRunContext) -> str | None:
    base = load_settings().api_url
    return f"{base.rstrip('/')}/runs/{context.flow_run.id}" if base else None


_ATTRIBUTES: dict[str, Callable[[FlowRunContext], Any]] = {
    "id": lambda c: str(c.flow_run.id),
    "name": lambda c: c.flow_run.name,
    "flow_name": lambda c: c.flow.name,
    "flow_version": lambda c: c.flow.version,
    "parameters": lambda c: dict(c.flow_run.parameters),
    "tags": lambda c: list(c.flow_run.tags),
    "scheduled_start_time": lambda c: c.scheduled_start_time,
    "run_count": lambda c: c.attempt,
    "parent_flow_run_id": lambda c: c.parent_flow_run_id,
    "parent_deployment_id": lambda c: None,
    "root_flow_run_id": lambda c: str(c.meta.correlation_id) if c.meta.correlation_id else str(c.flow_run.id),
    "deployment_id": lambda c: c.deployment_id,
    "job_variables": lambda c: {},
    "api_url": _api_url,
    "ui_url": _ui_url,
}
_EMPTY: dict[str, Any] = {"parameters": {}, "tags": [], "run_count": 0, "job_variables": {}}


def __getattr__(name: str) -> Any:
    getter = _ATTRIBUTES.get(name)
    if getter is None:
        raise AttributeError(f"{__name__} has no attribute {name!r}")
    context = flow_run_var.get()
    if context is None:
        return _EMPTY.get(name)
    return getter(context)
