"""Replay over HTTP against a live server: the request returns at once with the new run's id
and the server's built-in runner executes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from ledgerflow.events import open_store
from ledgerflow.events.runs import read_flow_run, request_flow_run
from ledgerflow.runtime.testing import harness
from ledgerflow.runtime import execute_flow_run
from tests.api.conftest import wait_until
from tests.runtime.replay_flows import executed
from tests.runtime.test_execute import REPO


def test_a_replay_requested_over_http_is_executed_by_the_server(
    tmp_path: Path, store_url: str, make_server: Callable[..., str]
) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "fail-7").write_text("")
    with harness(store_url) as store:
        scheduled = request_flow_run(store, flow_name="ten_steps", entrypoint="tests.runtime.replay_flows:ten_steps",
                                     working_dir=str(REPO), parameters={"folder": str(folder)})
        original = str(scheduled.data["flow_run_id"])
        assert execute_flow_run(original).is_failed()
    (folder / "fail-7").unlink()
    (folder / "executed").unlink()

    url = make_server(run_runner=True)
    with httpx.Client(base_url=url) as http:
        plan = http.post(f"/api/flow-runs/{original}/replay", json={"dry_run": True})
        assert plan.status_code == 202, plan.text
        assert plan.json()["flow_run_id"] is None
        assert [v["reuse"] for v in plan.json()["plan"]] == [True] * 6 + [False]
        assert not (folder / "executed").exists()  # a dry run runs nothing

        reply = http.post(f"/api/flow-runs/{original}/replay", json={})
        assert reply.status_code == 202, reply.text
        new_id = reply.json()["flow_run_id"]

        def done() -> bool:
            detail = http.get(f"/api/flow-runs/{new_id}")
            return detail.status_code == 200 and detail.json()["flow_run"]["state_name"] == "Completed"

        wait_until(done, timeout=120)
        detail = http.get(f"/api/flow-runs/{new_id}").json()
        assert detail["flow_run"]["replay_of"] == original
        reused = [t for t in detail["task_runs"] if t["state_name"] == "Reused"]
        assert len(reused) == 6 and all(t["cached_from"] for t in reused)
        assert http.get(f"/api/flow-runs/{original}").json()["replays"] == [new_id]
        assert executed(folder) == [f"step-{n}" for n in range(7, 11)]

        assert http.post("/api/flow-runs/nope/replay", json={}).status_code == 404
        bad = http.post(f"/api/flow-runs/{original}/replay", json={"no_reuse": "step"})
        assert bad.status_code == 422 and "no_reuse" in bad.json()["detail"]
    with open_store(store_url) as store:
        assert read_flow_run(store, original).state.name == "Failed"  # type: ignore[union-attr]
