"""Real `ledgerflow worker start` processes against a live server on PostgreSQL: every run
executed exactly once, cancels reach the run's process, a paused pool hands out nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import read_flow_run
from ledgerflow.events.workpools import worker_stream
from tests.api.conftest import wait_until
from tests.workers.conftest import LEDGERFLOW, Live

pytestmark = pytest.mark.postgres

StartWorker = Callable[..., "subprocess.Popen[str]"]


def _state(live: Live, run_id: str) -> str | None:
    state = read_flow_run(live.store, run_id).state
    return state.name if state else None


def _pool(live: Live, name: str) -> dict[str, object]:
    with live.http() as http:
        reply = http.get(f"/api/work-pools/{name}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _create_pool(live: Live, name: str, **options: object) -> None:
    with live.http() as http:
        reply = http.post("/api/work-pools", json={"name": name, **options})
    assert reply.status_code == 201, reply.text


def _workers(live: Live, pool: str) -> dict[str, dict[str, object]]:
    with live.http(live.read_key) as http:
        return {w["name"]: w for w in http.get("/api/workers", params={"pool": pool}).json()}


def test_four_workers_run_200_queued_runs_each_exactly_once(live: Live, start_worker: StartWorker, tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    _create_pool(live, "fleet")
    deployment = live.deploy("mark", "fleet", "fleet", folder=str(done))
    run_ids = live.request_runs(deployment, 200)
    workers = [start_worker("--pool", "fleet", "--limit", "4", "--name", f"w{i}", "--heartbeat", "2") for i in range(4)]

    wait_until(lambda: len(_workers(live, "fleet")) == 4, timeout=300)
    assert {w["status"] for w in _workers(live, "fleet").values()} == {"online"}

    def drained() -> bool:
        pool = _pool(live, "fleet")
        return pool["due"] == 0 and pool["running"] == 0 and len(os.listdir(done)) >= 200

    wait_until(drained, timeout=900)
    for process in workers:
        process.send_signal(signal.SIGTERM)
    assert [process.wait(120) for process in workers] == [0, 0, 0, 0]

    assert sorted(os.listdir(done)) == sorted(run_ids)  # one side effect per run, none twice
    assert Counter(_state(live, run_id) for run_id in run_ids) == {"Completed": 200}
    for run_id in run_ids:  # one claim each: a second would be a second Pending
        assert [e.type for e in live.store.read_stream(flow_run_stream(run_id))].count("flow-run.Pending") == 1
    claimed: Counter[str] = Counter()
    for log in tmp_path.glob("worker-*.log"):
        claimed.update(re.findall(r"claimed run (\S+)", log.read_text()))
    assert set(claimed) == set(run_ids) and set(claimed.values()) == {1}
    stopped = _workers(live, "fleet")
    assert {w["status"] for w in stopped.values()} == {"offline"} and all(w["running"] == [] for w in stopped.values())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between open and read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("runs_per_process", ["1", "5"])
def test_cancel_reaches_the_worker_which_stops_the_runs_process(
    live: Live, start_worker: StartWorker, tmp_path: Path, runs_per_process: str
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    _create_pool(live, "cx")
    deployment = live.deploy("sleepy", "cx", "cx", folder=str(started), seconds=600)
    [run_id] = live.request_runs(deployment, 1)
    start_worker("--pool", "cx", "--name", "c1", "--heartbeat", "1", "--runs-per-process", runs_per_process)
    marker = started / f"started-{run_id}"
    wait_until(marker.exists, timeout=300)
    pid = int(marker.read_text())
    assert _alive(pid)
    wait_until(lambda: _state(live, run_id) == "Running", timeout=60)  # the writer batches its appends
    wait_until(lambda: run_id in _workers(live, "cx")["c1"]["running"], timeout=60)  # type: ignore[operator]

    cancel = subprocess.run([LEDGERFLOW, "flow-run", "cancel", run_id], env=live.env(live.write_key),
                            capture_output=True, text=True, timeout=300)
    assert cancel.returncode == 0, cancel.stderr
    assert "Cancelling" in cancel.stdout

    wait_until(lambda: _state(live, run_id) == "Cancelled", timeout=120)
    wait_until(lambda: not _alive(pid), timeout=60)  # a process that ran a cancelled run is not used again
    wait_until(lambda: _workers(live, "cx")["c1"]["running"] == [], timeout=60)


def test_a_paused_pool_hands_out_no_runs_until_resumed(live: Live, start_worker: StartWorker, tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    _create_pool(live, "hold")
    with live.http() as http:
        assert http.post("/api/work-pools/hold/pause").json()["paused"] is True
    deployment = live.deploy("mark", "hold", "hold", folder=str(done))
    [run_id] = live.request_runs(deployment, 1)
    start_worker("--pool", "hold", "--name", "h1", "--heartbeat", "0.3")

    def beats() -> int:
        return len(live.store.read_stream(worker_stream("hold", "h1")))

    # Several heartbeats mean many polls (one each 0.2 s): none of them was handed the run.
    wait_until(lambda: beats() >= 4, timeout=300)
    assert _state(live, run_id) == "Scheduled" and os.listdir(done) == []

    with live.http() as http:
        assert http.post("/api/work-pools/hold/resume").json()["paused"] is False
    wait_until(lambda: _state(live, run_id) == "Completed", timeout=120)
    assert os.listdir(done) == [run_id]


def test_a_worker_refused_by_the_server_exits_with_one_line(live: Live, start_worker: StartWorker, tmp_path: Path) -> None:
    _create_pool(live, "gate")
    refused = start_worker("--pool", "gate", "--name", "r1", key=live.read_key)
    missing = start_worker("--pool", "nowhere", "--name", "r2")
    assert refused.wait(300) == 1 and missing.wait(300) == 1
    first, second = ((tmp_path / f"worker-{n}.log").read_text().splitlines() for n in (0, 1))
    assert first[0].startswith("error: HTTP 403") and "needs worker" in first[0]
    assert second[0].startswith("error: HTTP 404: no work pool 'nowhere'") and "ledgerflow work-pool create" in second[0]
