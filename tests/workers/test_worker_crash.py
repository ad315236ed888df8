"""kill -9 a worker mid-run (and the run's process): the server's crash monitor ends the run
`Crashed` within the heartbeat bound, a replay automation requests a replay in the same pool,
and another worker executes it, reusing the task that had completed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ledgerflow.events.liveness import HEARTBEAT
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import read_flow_run
from tests.api.conftest import wait_until
from tests.runtime.test_replay import task_states
from tests.workers.conftest import Live
from tests.workers.test_workers import StartWorker, _create_pool, _state

pytestmark = pytest.mark.postgres

INTERVAL = 1.0
"""The runs' heartbeat interval (LEDGERFLOW_HEARTBEAT_SECONDS of the workers' run processes)."""
SLACK = 5.0
"""Seconds allowed beyond the promised 2 intervals: the projection's lag on a loaded machine."""

REPLAY_RULE = {
    "name": "replay-crashed",
    "trigger": {"match": {"events": ["flow-run.Crashed"]}},
    "actions": [{"type": "replay-flow-run", "max_replays": 1}],
}


def _types(live: Live, run_id: str) -> list[str]:
    return [event.type for event in live.store.read_stream(flow_run_stream(run_id))]


def _replays_of(live: Live, run_id: str) -> list[str]:
    return [str(e.data["flow_run_id"]) for e in live.store.read_all(types=["flow-run.created"])
            if e.data.get("replay_of") == run_id]


def test_a_run_of_a_killed_worker_crashes_and_is_replayed_on_another_worker(
    live: Live, start_worker: StartWorker, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    with live.http() as http:
        reply = http.post("/api/automations", json=REPLAY_RULE)
    assert reply.status_code == 201, reply.text
    _create_pool(live, "fragile")
    deployment = live.deploy("prepare_then_hang", "fragile", "fragile", folder=str(folder))
    [run_id] = live.request_runs(deployment, 1)

    first = start_worker("--pool", "fragile", "--name", "w1", LEDGERFLOW_HEARTBEAT_SECONDS=str(INTERVAL))
    wait_until((folder / "started").exists, timeout=300)
    # `finish` is Running in the log (so `prepare`'s Completed is too) and the run has beaten.
    wait_until(lambda: "task-run.Running" in _types(live, run_id) and HEARTBEAT in _types(live, run_id), timeout=120)
    running = [e for e in live.store.read_stream(flow_run_stream(run_id)) if e.type == "flow-run.Running"]
    run_pid = int(running[-1].data["pid"])
    assert run_pid == int((folder / "started").read_text())
    assert running[-1].data["heartbeat_seconds"] == INTERVAL

    first.send_signal(signal.SIGKILL)
    os.kill(run_pid, signal.SIGKILL)
    killed = time.monotonic()
    first.wait(60)
    wait_until(lambda: _state(live, run_id) == "Crashed", timeout=2 * INTERVAL + SLACK)
    assert time.monotonic() - killed <= 2 * INTERVAL + SLACK
    assert _types(live, run_id).count("flow-run.Crashed") == 1

    wait_until(lambda: len(_replays_of(live, run_id)) == 1, timeout=120)
    [replay_id] = _replays_of(live, run_id)
    assert read_flow_run(live.store, replay_id).created["work_pool"] == "fragile"
    assert _state(live, replay_id) == "Scheduled"  # no live worker in the pool yet

    (folder / "second-attempt").write_text("")
    start_worker("--pool", "fragile", "--name", "w2", LEDGERFLOW_HEARTBEAT_SECONDS=str(INTERVAL))
    wait_until(lambda: _state(live, replay_id) == "Completed", timeout=300)

    claims = [e for e in live.store.read_stream(flow_run_stream(replay_id)) if e.type == "flow-run.Pending"]
    assert [e.data["executor"] for e in claims] == ["w2"]
    assert task_states(live.store, replay_id) == {"prepare-0": "Reused", "finish-0": "Completed"}
    assert (folder / "executed").read_text().split() == ["prepare", "finish", "finish"]  # prepare ran once
    assert (folder / "finished").read_text() == "42"  # from the reused result of prepare
    assert _state(live, run_id) == "Crashed"  # the original is untouched
    assert _replays_of(live, run_id) == [replay_id]
