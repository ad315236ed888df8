"""`DaskTaskRunner`: submitted and mapped task runs call their function on Dask workers (a
LocalCluster of two worker processes, or a scheduler and worker started apart on loopback),
with their events, logs, retries, caching and replay as with the thread pool."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from ledgerflow import replay
from ledgerflow.events import EventStore
from ledgerflow.runtime.dask import DaskTaskRunner
from tests.api.conftest import free_port
from tests.limits.dask_flows import fan_out

REPO = Path(__file__).resolve().parents[2]


def _events(store: EventStore, flow_run_id: object, kind: str) -> list[dict[str, object]]:
    return [dict(e.data) for e in store.read_stream(f"flow-run-{flow_run_id}") if e.type == kind]


def _worker_pids(store: EventStore, flow_run_id: object) -> set[int]:
    found = set()
    for log in _events(store, flow_run_id, "log.emitted"):
        match = re.search(r"in process (\d+)", str(log.get("message")))
        if match:
            found.add(int(match.group(1)))
    return found


def test_a_local_cluster_runs_mapped_tasks_with_logs_retries_caching_and_replay(
    runs: EventStore, tmp_path: Path,
) -> None:
    state = fan_out(str(tmp_path), 6, fail=True, return_state=True)
    assert state.is_failed() and "failing after 55, 4, recovered" in str(state.message)
    run_id = state.flow_run_id
    # Every mapped call ran on one of the two worker processes, never here.
    pids = _worker_pids(runs, run_id)
    assert len(pids) == 2 and os.getpid() not in pids
    messages = [str(log["message"]) for log in _events(runs, run_id, "log.emitted")]
    assert sum(m.startswith("printed by ") for m in messages) == 6  # log_prints from the workers
    completed = _events(runs, run_id, "task-run.Completed")
    assert len(completed) == 7  # six squares and the flaky task's second attempt
    assert len(_events(runs, run_id, "task-run.Cached")) == 1
    assert [e["attempt"] for e in _events(runs, run_id, "task-run.AwaitingRetry")] == [1]
    assert len(list(tmp_path.glob("attempt-*"))) == 2
    # Replay: every task's result is reused, nothing runs on Dask again.
    again = replay(run_id)
    assert not isinstance(again, str) and again.is_failed()
    reused = _events(runs, again.flow_run_id, "task-run.Reused")
    assert len(reused) == 8 and _events(runs, again.flow_run_id, "task-run.Running") == []
    assert len(list(tmp_path.glob("attempt-*"))) == 2


@pytest.fixture
def scheduler_address(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` and one `dask worker` started as separate processes on loopback."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "2", "--no-dashboard",
                               "--local-directory", str(tmp_path / "dask")],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(address, timeout=120) as client:
            client.wait_for_workers(1, timeout=120)
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_scheduler_started_apart_runs_the_flows_tasks(runs: EventStore, tmp_path: Path, scheduler_address: str) -> None:
    remote = fan_out.with_options(task_runner=DaskTaskRunner(address=scheduler_address))
    state = remote(str(tmp_path), 4, return_state=True)
    assert state.is_completed() and state.result() == 14, state.message
    pids = _worker_pids(runs, state.flow_run_id)
    assert len(pids) == 1 and os.getpid() not in pids
    assert len(_events(runs, state.flow_run_id, "task-run.Completed")) == 5
    assert repr(remote.task_runner) == f"DaskTaskRunner({scheduler_address})"
