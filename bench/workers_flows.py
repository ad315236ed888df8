"""The flow bench/workers.py deploys: one task."""

from __future__ import annotations

from ledgerflow import flow, task


@task
def increment(x: int) -> int:
    return x + 1


@flow
def one_task(x: int = 1) -> int:
    return int(increment(x))
