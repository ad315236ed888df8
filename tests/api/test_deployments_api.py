"""`/api/deployments` on each database: validated CRUD that writes nothing on bad input, and
deployment runs requested from the API, the CLI and `run_deployment` in a parent flow, all
executed by the server's built-in runner and listed by `flow-run ls --deployment`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from ledgerflow.events import open_store
from ledgerflow.events.deployments import deployment_id, deployment_stream
from ledgerflow.events.runs import read_flow_run
from tests.api.conftest import wait_until
from tests.integration.test_cli_control import LEDGERFLOW, cli_env

REPO = Path(__file__).resolve().parents[2]
FLOWS = "tests/deployments/flows.py"


def body(**changes: Any) -> dict[str, Any]:
    return {"name": "api", "entrypoint": f"{FLOWS}:double", "working_dir": str(REPO), "parameters": {"n": 1},
            **changes}


def deployment_events(store_url: str, name: str = "double/api") -> int:
    with open_store(store_url) as store:
        return len(store.read_stream(deployment_stream(deployment_id(name))))


def test_create_update_list_and_inspect(make_client: Callable[..., TestClient], store_url: str) -> None:
    client = make_client()
    created = client.post("/api/deployments", json=body(schedules=[{"kind": "cron", "cron": "0 6 * * *",
                                                                     "timezone": "Europe/Paris"}]))
    assert created.status_code == 201, created.text
    shown = created.json()["deployment"]
    assert shown["name"] == "double/api" and shown["parameters"] == {"n": 1}
    assert shown["parameter_schema"]["required"] == ["n"]
    again = client.post("/api/deployments", json=body(schedules=[{"kind": "cron", "cron": "0 6 * * *",
                                                                   "timezone": "Europe/Paris"}]))
    assert again.status_code == 200 and again.json()["outcome"] == "unchanged"
    changed = client.patch(f"/api/deployments/{shown['id']}", json={"concurrency_limit": 2, "tags": ["etl"]})
    assert changed.status_code == 200 and changed.json()["changed"] == ["tags", "concurrency_limit"]
    detail = client.get(f"/api/deployments/{shown['id']}").json()
    assert detail["concurrency_limit"] == 2 and len(detail["next_slots"]) == 5
    assert client.get("/api/deployments/name/double/api").json()["id"] == shown["id"]
    wait_until(lambda: [d["name"] for d in client.get("/api/deployments").json()] == ["double/api"])
    assert client.get("/api/deployments", params={"tag": "nightly"}).json() == []
    assert client.post(f"/api/deployments/{shown['id']}/pause").json()["paused"] is True
    assert client.post(f"/api/deployments/{shown['id']}/resume").json()["paused"] is False
    assert client.delete(f"/api/deployments/{shown['id']}").status_code == 200
    assert client.get(f"/api/deployments/{shown['id']}").status_code == 404
    assert deployment_events(store_url) == 5  # created, updated, paused, resumed, deleted


def test_bad_input_gets_a_clear_4xx_and_writes_nothing(make_client: Callable[..., TestClient], store_url: str) -> None:
    client = make_client()
    cases = [
        (body(parameters={"m": 1}), "takes no parameter 'm'"),
        (body(parameters={"n": "many"}), "valid integer"),
        (body(parameters={}, schedules=[{"kind": "interval", "interval": 60}]), "needs parameter 'n'"),
        (body(schedules=[{"kind": "cron", "cron": "0 6 * *"}]), "5 fields"),
        (body(schedules=[{"kind": "cron", "cron": "0 6 * * *", "timezone": "Nowhere/City"}]), "unknown timezone"),
        (body(entrypoint=f"{FLOWS}:missing"), "has no 'missing'"),
        (body(entrypoint="tests/deployments/nope.py:double"), "does not exist"),
        (body(name="a/b"), "without '/'"),
        (body(concurrency_limit=0), "greater than or equal to 1"),
        (body(surprise=True), "Extra inputs"),
    ]
    for sent, problem in cases:
        reply = client.post("/api/deployments", json=sent)
        assert reply.status_code == 422, (sent, reply.text)
        assert problem in reply.json()["detail"], reply.json()
    assert client.post("/api/deployments/00000000-0000-0000-0000-000000000000/run").status_code == 404
    created = client.post("/api/deployments", json=body()).json()["deployment"]
    wrong = client.post(f"/api/deployments/{created['id']}/run", json={"parameters": {"zzz": 1}})
    assert wrong.status_code == 422 and "takes no parameter 'zzz'" in wrong.json()["detail"]
    naive = client.post(f"/api/deployments/{created['id']}/run", json={"scheduled_time": "2024-01-01T00:00:00"})
    assert naive.status_code == 422 and "timezone" in naive.json()["detail"]
    assert deployment_events(store_url) == 1
    for name in ("double/a", "double/b"):
        assert deployment_events(store_url, name) == 0
    client.post("/api/events", json={"appends": [{"stream": "sentinel", "events": [{"type": "sentinel", "data": {}}]}]})
    with open_store(store_url) as store:
        wait_until(lambda: any(e.type == "sentinel" for e in store.read_last(5)))
        assert store.read_all(types=["flow-run.*"]) == []


def test_runs_from_the_api_the_cli_and_run_deployment_execute_through_the_server(
    make_server: Callable[..., str], tmp_path: Path, store_url: str,
) -> None:
    url = make_server(run_runner=True, run_scheduler=True)
    with httpx.Client(base_url=url, timeout=120) as http:
        created = http.post("/api/deployments", json=body())
        assert created.status_code == 201, created.text
        deployment = created.json()["deployment"]["id"]
        reply = http.post(f"/api/deployments/{deployment}/run", json={"parameters": {"n": 20}})
        from_api = reply.json()["flow_run_id"]
    env = cli_env(tmp_path, store_url, LEDGERFLOW_API_URL=url)
    cli = subprocess.run([LEDGERFLOW, "deployment", "run", "double/api", "--param", "n=30", "--watch"],
                         env=env, capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Completed" in cli.stdout
    from_cli = cli.stdout.split()[2]
    script = "from tests.deployments.flows import parent; print(parent(40))"
    parent = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180,
                            cwd=REPO)
    assert parent.returncode == 0, parent.stdout + parent.stderr
    assert parent.stdout.strip().splitlines()[-1] == "81"

    with open_store(store_url) as store:
        wait_until(lambda: (s := read_flow_run(store, from_api).state) is not None and s.name == "Completed")
        ran = [e.data for e in store.read_all(limit=10_000, types=["flow-run.created"])
               if e.data.get("deployment_id") == deployment]
        assert len(ran) == 3
        child = next(r for r in ran if r["parameters"] == {"n": 40})
        assert child["parent_flow_run_id"] and child["parent_task_run_id"]
        stand_in = [e for e in store.read_stream(f"flow-run-{child['parent_flow_run_id']}")
                    if e.data.get("task_run_id") == child["parent_task_run_id"]]
        assert [e.type for e in stand_in] == ["task-run.created", "task-run.Running", "task-run.Completed"]
        assert stand_in[0].data["child_flow_run_id"] == child["flow_run_id"]
        for run in ran:
            events = store.read_stream(f"flow-run-{run['flow_run_id']}")
            assert [e.type for e in events].count("flow-run.Pending") == 1
            assert events[-1].type == "flow-run.Completed"

    listed = subprocess.run([LEDGERFLOW, "flow-run", "ls", "--deployment", "double/api"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for run_id in (from_api, from_cli, child["flow_run_id"]):
        assert run_id in listed.stdout
    local = subprocess.run([LEDGERFLOW, "flow-run", "ls", "--deployment", "double/api"],
                           env=cli_env(tmp_path, store_url), capture_output=True, text=True, timeout=60)
    assert all(run_id in local.stdout for run_id in (from_api, from_cli, child["flow_run_id"]))
