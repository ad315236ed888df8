"""A flow the context tests run by entrypoint, as a deployment's run would be."""

from __future__ import annotations

from ledgerflow import flow
from ledgerflow.runtime import deployment, flow_run


@flow
def when() -> list[str]:
    return [flow_run.scheduled_start_time.isoformat(), str(deployment.id)]
