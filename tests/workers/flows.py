"""Flows the worker tests deploy (entrypoint `tests/workers/flows.py:<name>`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledgerflow import flow, task
from ledgerflow.runtime import flow_run


@task
def record(folder: str) -> str:
    """One file per execution, named by the flow run and the process: a run executed twice
    leaves two files (or one written twice, which `O_EXCL` refuses)."""
    path = Path(folder) / f"{flow_run.id}"
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(descriptor, str(os.getpid()).encode())
    os.close(descriptor)
    return str(path)


@flow
def mark(folder: str) -> str:
    """Leaves one file per run in `folder`."""
    return str(record(folder))


@flow
def sleepy(folder: str, seconds: float = 600.0) -> None:
    """Says it started (a file named by the run), then sleeps in one long call."""
    written = Path(folder) / f".started-{flow_run.id}"
    written.write_text(str(os.getpid()))
    written.rename(Path(folder) / f"started-{flow_run.id}")
    time.sleep(seconds)
