"""Prefect's `ProcessPoolTaskRunner` (docs: "Run tasks concurrently or in parallel"): submitted
tasks run in worker processes; their logs, prints and artifacts still reach the run's log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ledgerflow import ProcessPoolTaskRunner, create_markdown_artifact, flow, get_run_logger, task
from ledgerflow.events import EventStore
from ledgerflow.runtime.process_pool import NotImportable
from tests.prefect.conftest import run_events, types_of


@task(log_prints=True)
def square(x: int) -> tuple[int, int]:
    get_run_logger().info("squaring %d", x)
    print(f"printed from {x}")
    return x * x, os.getpid()


@task
async def async_double(x: int) -> tuple[int, int]:
    return 2 * x, os.getpid()


@task(retries=1)
def flaky(marker: str) -> str:
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first attempt fails")
    return "second attempt works"


@task
def reports() -> None:
    create_markdown_artifact("# made in a worker", key="worker-report")


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def parallel(numbers: list[int]) -> list[tuple[int, int]]:
    futures = [square.submit(n) for n in numbers]
    return [future.result() for future in futures]


@flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
def mixed(marker: str) -> tuple[Any, str]:
    reports.submit().result()
    return async_double.submit(21).result(), flaky.submit(marker).result()


def test_submitted_tasks_run_in_worker_processes_and_log_into_the_run(runs: EventStore) -> None:
    state = parallel([1, 2, 3], return_state=True)
    results = state.result()
    assert [value for value, _ in results] == [1, 4, 9]
    assert all(pid != os.getpid() for _, pid in results)
    run_id = state.flow_run_id
    assert types_of(runs, run_id, "task-run.").count("task-run.Completed") == 3
    logs = run_events(runs, run_id, "log.emitted")
    task_runs = {e.data["task_run_id"] for e in run_events(runs, run_id, "task-run.created")}
    for n in (1, 2, 3):
        squared = next(e for e in logs if e.data["message"] == f"squaring {n}")
        printed = next(e for e in logs if e.data["message"] == f"printed from {n}")
        assert squared.data["task_run_id"] in task_runs and printed.data["task_run_id"] == squared.data["task_run_id"]


def test_async_tasks_retries_and_artifacts_work_across_the_boundary(runs: EventStore, tmp_path: Path) -> None:
    state = mixed(str(tmp_path / "marker"), return_state=True)
    (doubled, pid), flaky_result = state.result()
    assert doubled == 42 and pid != os.getpid()
    assert flaky_result == "second attempt works"
    run_id = state.flow_run_id
    assert "task-run.AwaitingRetry" in types_of(runs, run_id)  # the engine retried in the flow's process
    artifact = run_events(runs, run_id, "artifact.created")[0]
    assert artifact.data["key"] == "worker-report" and artifact.data["task_run_id"]


def test_a_task_a_worker_cannot_import_fails_with_the_reason(runs: EventStore) -> None:
    @task
    def local_task() -> int:
        return 1

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def uses_a_local_task() -> int:
        value: int = local_task.submit().result()
        return value

    state = uses_a_local_task(return_state=True)
    assert state.is_failed()
    with pytest.raises(NotImportable, match="defined inside a function"):
        state.result()
    failed = run_events(runs, state.flow_run_id, "task-run.Failed")[0]
    assert "top level of a module" in failed.data["message"]


def test_a_script_under_main_guard_works(sqlite_url: str, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import os
        from ledgerflow import ProcessPoolTaskRunner, flow, task

        @task
        def pid(n: int) -> int:
            return os.getpid()

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def main() -> list[int]:
            return [f.result() for f in pid.map(range(4))]

        if __name__ == "__main__":
            pids = main()
            print("other processes:", all(p != os.getpid() for p in pids))
    """))
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": sqlite_url}
    env.pop("LEDGERFLOW_API_URL", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "other processes: True" in done.stdout
