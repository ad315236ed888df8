"""Benchmark of replay from failure: a 1,000-task sequential flow that fails at task 999.

    python -m bench.replay [--tasks 1000] [--task-ms 1] [--backend sqlite|postgres|both]

Prints the time of the original run (failing at task 999), of its replay (which must
re-execute exactly tasks 999 and 1000) and of a fresh run of the whole flow. Target: the
replay takes < 10% of a fresh run's time when tasks take 1 ms each.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import temp_postgres_url, temp_sqlite_url
from ledgerflow import flow, replay, task
from ledgerflow.events.runs import request_flow_run
from ledgerflow.runtime import config, execute_flow_run
from ledgerflow.runtime.states import State
from ledgerflow.runtime.testing import harness

@task
def work(folder: str, n: int, total: int, task_ms: float) -> int:
    time.sleep(task_ms / 1000)
    if n == 999 and os.path.exists(os.path.join(folder, "fail")):
        raise RuntimeError("task 999 fails on purpose")
    return total + n


@flow
def long_flow(folder: str, tasks: int, task_ms: float) -> int:
    total = 0
    for n in range(1, tasks + 1):
        total = work(folder, n, total, task_ms)
    return total


def timed(call: Callable[[], State]) -> tuple[float, State]:
    # Each phase starts from an empty collector: otherwise the phase before leaves it one
    # allocation short of a full pass (~25 ms here), and whichever phase comes next pays for it.
    gc.collect()
    start = time.perf_counter()
    state = call()
    return time.perf_counter() - start, state


def measure(label: str, url: str, tasks: int, task_ms: float) -> None:
    with harness(url) as store, tempfile.TemporaryDirectory() as folder:
        Path(folder, "fail").write_text("")
        parameters = {"folder": folder, "tasks": tasks, "task_ms": task_ms}

        def requested() -> str:
            scheduled = request_flow_run(store, flow_name="long_flow", entrypoint="bench.replay:long_flow",
                                         working_dir=os.getcwd(), parameters=parameters)
            return str(scheduled.data["flow_run_id"])

        original = requested()
        original_time, state = timed(lambda: execute_flow_run(original))
        assert state.is_failed(), state
        Path(folder, "fail").unlink()
        replay_time, replayed = timed(lambda: replay(original))  # type: ignore[arg-type, return-value]
        assert replayed.is_completed(), replayed
        # The tasks the replay executed: their runs went Running (a reused one never does).
        events = store.read_stream(f"flow-run-{replayed.flow_run_id}")
        numbers = {e.data["task_run_id"]: e.data["parameters"]["n"] for e in events if e.type == "task-run.created"}
        rerun = sorted(numbers[e.data["task_run_id"]] for e in events if e.type == "task-run.Running")
        fresh_time, fresh = timed(lambda: execute_flow_run(requested()))
        assert fresh.is_completed() and fresh.result() == replayed.result()
        share = replay_time / fresh_time
        print(f"{label}")
        print(f"  original run (fails at task 999)   {original_time:7.3f} s")
        print(f"  replay                              {replay_time:7.3f} s   re-executed {len(rerun)} tasks {rerun}")
        print(f"  fresh run                           {fresh_time:7.3f} s")
        print(f"  replay / fresh                      {share:7.1%}   (target < 10%: {'met' if share < 0.10 else 'NOT met'};"
              f" exactly 2 re-executed: {'yes' if rerun == [999, 1000] else 'NO'})")
    config.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--task-ms", type=float, default=1.0)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    if args.tasks < 1000:
        parser.error("--tasks must be at least 1000 (task 999 fails)")
    if args.backend in ("sqlite", "both"):
        with temp_sqlite_url() as url:
            measure("SQLite", url, args.tasks, args.task_ms)
    if args.backend in ("postgres", "both"):
        with temp_postgres_url() as url:
            measure("PostgreSQL", url, args.tasks, args.task_ms)


if __name__ == "__main__":
    main()
