"""Flows the deployment tests deploy (entrypoint `tests/deployments/flows.py:<name>` from the repo)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledgerflow import flow, run_deployment


@flow
def double(n: int, label: str = "x") -> int:
    return n * 2


@flow
def slow(folder: str, seconds: float = 0.3) -> str:
    """Records when it ran (start, end) in `folder`, to check how many ran at once."""
    start = time.time()
    time.sleep(seconds)
    (Path(folder) / f"{start:.6f}").write_text(f"{start} {time.time()}")
    return folder


@flow
def parent(n: int) -> int:
    state = run_deployment("double/api", parameters={"n": n}, timeout=120)
    return int(state.result()) + 1


@flow(persist_result=False)
def gated(gate: str) -> None:
    """Runs until the file `gate` exists: a test decides when its runs end."""
    while not Path(gate).exists():
        time.sleep(0.05)


@flow(persist_result=False)
def niceness(into: str) -> None:
    """Writes the niceness its process runs at."""
    Path(into).write_text(str(os.nice(0)))
