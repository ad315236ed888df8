"""Flows the worker tests deploy (entrypoint `tests/workers/flows.py:<name>`)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
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


def _executed(folder: str, name: str) -> None:
    with open(Path(folder) / "executed", "a") as log:
        log.write(f"{name}\n")


@task
def prepare(folder: str) -> int:
    _executed(folder, "prepare")
    return 41


@task
def finish(folder: str, prepared: int) -> int:
    """Hangs (after saying so in `started`, with its pid) unless `<folder>/second-attempt` exists."""
    _executed(folder, "finish")
    if not (Path(folder) / "second-attempt").exists():
        (Path(folder) / ".started").write_text(str(os.getpid()))
        (Path(folder) / ".started").rename(Path(folder) / "started")
        time.sleep(600)
    (Path(folder) / "finished").write_text(str(prepared + 1))
    return prepared + 1


@flow
def prepare_then_hang(folder: str) -> int:
    """`prepare`, then `finish`, which hangs on the first attempt."""
    return int(finish(folder, prepare(folder)))


@flow
def meddle(folder: str) -> None:
    """Writes what its process showed it (pid, working directory, a variable, the import path),
    then changes all three for whatever runs next in the process."""
    seen = {"pid": os.getpid(), "cwd": os.getcwd(), "meddled": os.environ.get("LEDGERFLOW_TEST_MEDDLED"),
            "path": list(sys.path)}
    (Path(folder) / str(flow_run.id)).write_text(json.dumps(seen))
    os.environ["LEDGERFLOW_TEST_MEDDLED"] = str(flow_run.id)
    sys.path.insert(0, f"/nowhere/{flow_run.id}")
    os.chdir("/")


@flow
def takes_sigterm(folder: str) -> None:
    """Installs a SIGTERM handler of its own (as some libraries do) and leaves a thread that
    keeps its process alive for a moment after the run; writes its pid."""
    signal.signal(signal.SIGTERM, lambda *_: None)
    threading.Thread(target=time.sleep, args=(1.0,)).start()
    (Path(folder) / str(flow_run.id)).write_text(str(os.getpid()))
