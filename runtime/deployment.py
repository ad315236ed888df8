"""The deployment of the current flow run, if it has one (Prefect's `prefect.runtime.deployment`).

    from ledgerflow.runtime import deployment
    deployment.id, deployment.flow_run_id, deployment.parameters, ...

Each attribute is None when the run was not started from a deployment.
"""

from __future__ import annotations

from typing import Any

from ledgerflow.runtime.context import flow_run_var

__all__ = ["flow_run_id", "id", "name", "parameters", "version"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"{__name__} has no attribute {name!r}")
    context = flow_run_var.get()
    if context is None or context.deployment_id is None:
        return {} if name == "parameters" else None
    if name == "id":
        return context.deployment_id
    if name == "flow_run_id":
        return str(context.flow_run.id)
    if name == "parameters":
        return dict(context.flow_run.parameters)
    return None  # name and version live in the deployment's own stream, not in the run
