"""`ledgerflow flow-run cancel` and `flow-run execute` from the command line, on both stores:
a flow in another process is stopped; two executors racing for one run run it once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from datetime import timedelta

from ledgerflow.events import open_store
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import read_flow_run, request_flow_run

LEDGERFLOW = str(Path(sys.executable).with_name("ledgerflow"))
REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from ledgerflow import flow, task
import time
from pathlib import Path

@task
def step(folder: str, n: int) -> int:
    time.sleep(0.1)
    (Path(folder) / f"step-{n}").write_text("")
    return n

@flow
def long_job(folder: str) -> int:
    return sum(step(folder, n) for n in range(300))

if __name__ == "__main__":
    state = long_job(sys.argv[1], return_state=True)
    print("final", state.name)
"""


def cli_env(tmp_path: Path, store_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path / "home"), "LEDGERFLOW_DATABASE_URL": store_url, "COLUMNS": "200"}
    env.pop("LEDGERFLOW_API_URL", None)
    return {**env, **extra}


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def run_cancelled_from_the_cli(tmp_path: Path, env: dict[str, str], cancel_env: dict[str, str], store_url: str) -> None:
    (tmp_path / "job.py").write_text(SCRIPT)
    folder = tmp_path / "out"
    folder.mkdir()
    job = subprocess.Popen([sys.executable, "job.py", str(folder)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (folder / "step-2").exists())
        with open_store(store_url) as store:
            created: list[str] = []

            def run_known() -> bool:
                created[:] = [e.data["flow_run_id"] for e in store.read_all(types=["flow-run.created"])]
                return bool(created)

            wait_for(run_known)
            cancelled = subprocess.run([LEDGERFLOW, "flow-run", "cancel", created[0], "-m", "enough"], env=cancel_env,
                                       capture_output=True, text=True, timeout=120)
            assert cancelled.returncode == 0, cancelled.stderr
            assert "Cancelling" in cancelled.stdout
            stdout, stderr = job.communicate(timeout=60)
            assert "final Cancelled" in stdout, stderr
            assert len(list(folder.iterdir())) < 100
            history = read_flow_run(store, created[0])
            assert history.state is not None and history.state.name == "Cancelled"
            again = subprocess.run([LEDGERFLOW, "flow-run", "cancel", created[0]], env=cancel_env, capture_output=True,
                                   text=True, timeout=120)
            assert again.returncode == 1 and "already Cancelled" in again.stderr
    finally:
        job.kill()
        job.wait()


def test_cancel_stops_a_flow_running_in_another_process(tmp_path: Path, store_url: str) -> None:
    env = cli_env(tmp_path, store_url)
    run_cancelled_from_the_cli(tmp_path, env, env, store_url)


def test_cancel_of_an_unknown_run_says_so(tmp_path: Path, store_url: str) -> None:
    missing = subprocess.run([LEDGERFLOW, "flow-run", "cancel", "no-such-run"], env=cli_env(tmp_path, store_url),
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert "no flow run with id 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr


def test_two_executors_racing_for_one_run_run_it_once(tmp_path: Path, store_url: str) -> None:
    env = cli_env(tmp_path, store_url)
    marker = tmp_path / "ran"
    marker.mkdir()
    with open_store(store_url) as store:
        scheduled = request_flow_run(
            store, flow_name="sequential", entrypoint="tests.runtime.sample_flows:sequential", working_dir=str(REPO),
            parameters={"folder": str(marker), "steps": 3, "seconds": 0.0},
            # Both executors start, wait for this time and then claim at once: a real race.
            scheduled_time=utcnow() + timedelta(seconds=5),
        )
        run_id = scheduled.data["flow_run_id"]
        executors = [
            subprocess.Popen([LEDGERFLOW, "flow-run", "execute", run_id], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [(p.returncode, *p.communicate(timeout=120)) for p in executors]
        results = [(p.returncode, out, error) for p, (_, out, error) in zip(executors, results, strict=True)]
        codes = sorted(code for code, _, _ in results)
        # The loser backs off: claimed by the other (3), or, on a machine so loaded that it
        # started after the winner had finished, nothing left to execute (4).
        assert codes in ([0, 3], [0, 4]), results
        winner = next(out for code, out, _ in results if code == 0)
        loser = next(error for code, _, error in results if code != 0)
        assert "finished Completed" in winner
        assert ("claimed" in loser or "is Completed" in loser) and "Traceback" not in loser
        assert sorted(p.name for p in marker.iterdir()) == ["step-0", "step-1", "step-2"]
        types = [e.type for e in read_flow_run(store, run_id).events]
        assert types.count("flow-run.Running") == 1 and types[-1] == "flow-run.Completed"
        finished = subprocess.run([LEDGERFLOW, "flow-run", "execute", run_id], env=env, capture_output=True, text=True,
                                  timeout=120)
        assert finished.returncode == 4 and "is Completed, not Scheduled" in finished.stderr
