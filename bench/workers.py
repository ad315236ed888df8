"""Benchmark of work pools and workers, end to end through a real server on PostgreSQL.

    python -m bench.workers [--runs 1000] [--workers 4] [--limit 8] [--runs-per-process 50,1]

A `ledgerflow server start` process on a fresh PostgreSQL schema; `--workers` real
`ledgerflow worker start` processes on one pool (each running up to `--limit` runs at once,
with each of the `--runs-per-process` values in turn: 1 is a fresh process per run, 50 a run
process that executes up to 50 runs); once they are online, `--runs` runs of a one-task flow's
deployment are requested, all due at once. Printed, for each:
- runs/s end to end: runs / (last run Completed - the moment they were due);
- claim conflicts: claims a worker lost to another (a 409 on its versioned append);
- due -> Running: from each run's due time to its `flow-run.Running`, p50 / p99 (with every
  run due at once this includes the wait in the queue);
- CPU per run of the server and of the workers with their run processes (where time goes);
- a check that each run was claimed once and ended Completed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench._common import percentile, temp_postgres_url
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import Deployment, apply_deployment, run_request, spec_from
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.workpools import create_work_pool

REPO = Path(__file__).resolve().parents[1]
POOL = "bench"
FINAL = frozenset(f"flow-run.{name}" for name in ("Completed", "Failed", "Crashed", "Cancelled"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


def _get(url: str, path: str) -> Any:
    try:
        reply = httpx.get(url + path, timeout=10)
    except httpx.TransportError:
        return None
    return reply.json() if reply.status_code == 200 else None


def _cpu(pid: int) -> float:
    """CPU seconds of process `pid`, its children, and the children they reaped (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return 0.0
    own = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(_cpu(int(child)) for child in children)


def _request(store: EventStore, deployment: Deployment, count: int) -> list[str]:
    ids = [new_id() for _ in range(count)]
    due = utcnow()
    for start in range(0, count, 100):
        store.append_streams([run_request(deployment, {}, flow_run_id=run_id, scheduled_time=due, actor="bench")
                              for run_id in ids[start:start + 100]])
    return [str(run_id) for run_id in ids]


def bench(store_url: str, runs: int, workers: int, limit: int, runs_per_process: int) -> None:
    home = tempfile.mkdtemp(prefix="ledgerflow-bench-workers-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=home, LEDGERFLOW_DATABASE_URL=store_url)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logs = Path(home)
    server = subprocess.Popen([sys.executable, "-m", "ledgerflow.api", "server", "start", "--port", str(port),
                               "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[subprocess.Popen[bytes]] = []
    store = open_store(store_url)
    try:
        _wait(lambda: _get(url, "/health") is not None, 120, "the server")
        create_work_pool(store, POOL)
        spec = spec_from({"flow_name": "one_task", "name": "bench", "entrypoint": "bench/workers_flows.py:one_task",
                          "working_dir": str(REPO), "work_pool": POOL})
        deployment = apply_deployment(store, spec).deployment
        worker_env = {**env, "LEDGERFLOW_API_URL": url}
        for n in range(workers):
            with open(logs / f"worker-{n}.log", "wb") as log:
                started.append(subprocess.Popen(
                    [sys.executable, "-m", "ledgerflow.api", "worker", "start", "--pool", POOL, "--limit", str(limit),
                     "--name", f"w{n}", "--runs-per-process", str(runs_per_process)],
                    env=worker_env, stdout=log, stderr=subprocess.STDOUT))
        _wait(lambda: len(_get(url, f"/api/workers?pool={POOL}") or []) == workers, 300, "the workers")
        time.sleep(2.0)  # let every worker's fork server come up before the runs are due

        begin = time.monotonic()
        cpu_before = _cpu(server.pid), sum(_cpu(process.pid) for process in started)
        run_ids = _request(store, deployment, runs)

        def drained() -> bool:
            pool = _get(url, f"/api/work-pools/{POOL}")
            if not (isinstance(pool, dict) and pool["due"] == 0 and pool["running"] == 0):
                return False  # the projection may not have seen the requests yet: ask the log
            return all(store.read_stream(flow_run_stream(run_id))[-1].type in FINAL for run_id in run_ids)
        _wait(drained, 3600, "the runs")
        wall = time.monotonic() - begin
        server_cpu = _cpu(server.pid) - cpu_before[0]
        worker_cpu = sum(_cpu(process.pid) for process in started) - cpu_before[1]
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            process.wait(120)
        server.terminate()
        server.wait(60)

    delays: list[float] = []
    dues: list[datetime] = []
    ends: list[datetime] = []
    claims = 0
    states: Counter[str] = Counter()
    for run_id in run_ids:
        events = store.read_stream(flow_run_stream(run_id))
        due = datetime.fromisoformat(next(e for e in events if e.type == "flow-run.Scheduled").data["scheduled_time"])
        dues.append(due)
        running = next((e for e in events if e.type == "flow-run.Running"), None)
        if running is not None:
            delays.append((running.recorded - due).total_seconds())
        states[events[-1].type.partition(".")[2]] += 1
        ends.append(events[-1].recorded)
        claims += sum(e.type == "flow-run.Pending" for e in events)
    store.close()
    span = (max(ends) - min(dues)).total_seconds()
    conflicts = sum(int(found) for n in range(workers) for found in
                    re.findall(r"(\d+) claimed by another worker first", (logs / f"worker-{n}.log").read_text()))
    print(f"{runs} runs, {workers} workers x limit {limit}, {runs_per_process} run(s) per run process, "
          "PostgreSQL, one server process")
    print(f"  end to end          {runs / span:8.1f} runs/s   ({span:.1f} s from due to the last end; wall {wall:.1f} s)")
    print(f"  claim conflicts     {conflicts:8d}")
    print(f"  due -> Running      p50 {percentile(delays, 50):.2f} s   p99 {percentile(delays, 99):.2f} s")
    print(f"  CPU per run         server {server_cpu / runs * 1000:.0f} ms, workers and run processes "
          f"{worker_cpu / runs * 1000:.0f} ms (2 cores: at most ~{2 / ((server_cpu + worker_cpu) / runs):.0f} runs/s "
          f"before PostgreSQL's share)")
    print(f"  final states        {dict(states)}; claims per run {claims / runs:.3f} (must be 1.000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--limit", type=int, default=8, help="runs at once per worker")
    parser.add_argument("--runs-per-process", default="50,1", help="the workers' --runs-per-process, each in turn")
    args = parser.parse_args()
    for runs_per_process in (int(value) for value in args.runs_per_process.split(",")):
        with temp_postgres_url() as url:
            bench(url, args.runs, args.workers, args.limit, runs_per_process)


if __name__ == "__main__":
    main()
