"""Run endpoints over the projections, on flows the runtime really ran; cancel races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ledgerflow.api.http import deps
from ledgerflow.api.http.state import ServerState

from ledgerflow.runtime import flow, get_run_logger, task
from ledgerflow.runtime.testing import harness
from tests.api.conftest import wait_until


@task
def double(x: int) -> int:
    return x * 2


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def doubling(n: int = 3) -> int:
    get_run_logger().warning("doubling %s numbers", n)
    doubled = [double.submit(i + 10) for i in range(n)]
    summed: int = total(doubled)
    return summed


@flow
def failing() -> None:
    raise ValueError("boom")


def run_id_of(client: TestClient, flow_name: str) -> str:
    """The id of the run of `flow_name`, once the projections show it finished."""
    found: list[str] = []

    def listed() -> bool:
        items = client.get("/api/flow-runs", params={"flow_name": flow_name}).json()["items"]
        found[:] = [r["id"] for r in items if r["state_type"] in ("COMPLETED", "FAILED")]
        return bool(found)

    wait_until(listed)
    return found[0]


def projected(client: TestClient) -> None:
    """Wait until every projection has applied every event the log shows."""
    wait_until(lambda: not any(client.get("/health").json()["projection_lag"].values()))


def test_run_endpoints_answer_from_the_projections(make_client: Callable[..., TestClient], store_url: str) -> None:
    client = make_client()  # its projection service keeps the read model current; GETs only read
    with harness(store_url):
        assert doubling() == 66
        try:
            failing()
        except ValueError:
            pass
    # The projection service applies the log in order (on PostgreSQL a reader sees a commit once
    # no older transaction in the cluster is still open): the last run written being listed
    # means everything before it is too.
    run_id_of(client, "failing")
    run_id = run_id_of(client, "doubling")
    projected(client)
    page = client.get("/api/flow-runs", params={"state": "FAILED"}).json()
    assert [r["flow_name"] for r in page["items"]] == ["failing"]
    first = client.get("/api/flow-runs", params={"limit": 1, "sort": "oldest"}).json()
    assert first["items"][0]["id"] == run_id and first["next_cursor"]
    second = client.get("/api/flow-runs", params={"limit": 1, "sort": "oldest", "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["flow_name"] == "failing"

    detail = client.get(f"/api/flow-runs/{run_id}").json()
    assert detail["flow_run"]["state_name"] == "Completed"
    assert sorted(t["task_name"] for t in detail["task_runs"]) == ["double", "double", "double", "total"]
    logs = client.get(f"/api/flow-runs/{run_id}/logs", params={"min_level": 30}).json()
    assert [line["message"] for line in logs["items"]] == ["doubling 3 numbers"]
    assert client.get(f"/api/flow-runs/{run_id}/artifacts").json() == []
    graph = client.get(f"/api/flow-runs/{run_id}/lineage").json()
    total_id = next(t["id"] for t in detail["task_runs"] if t["task_name"] == "total")
    assert sum(1 for e in graph["edges"] if e["target"] == total_id and e["kind"] == "upstream") == 3

    created = detail["states"][0]["occurred"]
    early = client.get(f"/api/flow-runs/{run_id}/as-of", params={"time": created}).json()
    assert early["flow_run"]["state_name"] in ("Pending", "Running")
    assert client.get(f"/api/flow-runs/{run_id}/as-of").status_code == 422
    assert client.get(f"/api/flow-runs/{run_id}/as-of", params={"cursor": "bad"}).status_code == 422

    report = client.get("/api/analytics/flows", params={"grain": "hour"}).json()
    by_flow = {g["value"]: g for g in report["groups"]}
    assert by_flow["doubling"]["completed"] == 1 and by_flow["failing"]["failed"] == 1
    tasks = client.get("/api/analytics/tasks").json()
    assert sum(g["runs"] for g in tasks["groups"]) == 4
    assert client.get("/api/flow-runs/no-such-run").status_code == 404


def schedule_run(client: TestClient, run_id: str) -> str:
    """Request run `run_id` through the API; the log cursor of its last event."""
    created = {"flow_run_id": run_id, "flow_name": "later", "run_name": "later-1"}
    scheduled = {"flow_run_id": run_id, "state_type": "SCHEDULED", "state_name": "Scheduled"}
    body = {"appends": [{"stream": f"flow-run-{run_id}", "events": [
        {"type": "flow-run.created", "data": created},
        {"type": "flow-run.Scheduled", "data": scheduled},
    ]}]}
    reply = client.post("/api/events", json=body)
    assert reply.status_code == 200
    return str(reply.json()["events"][-1]["cursor"])


def test_a_read_naming_a_cursor_answers_once_the_projections_reflect_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `client` runs no projection service: the read model only moves when this test moves it.
    cursor = schedule_run(client, "r-1")
    assert client.get("/api/flow-runs/r-1").status_code == 404  # a plain read answers at once, behind the log
    state: ServerState = client.app.state.ledgerflow  # type: ignore[attr-defined]
    runner = state.read_model.runner
    folding = threading.Timer(0.3, runner.catch_up)
    folding.start()
    waited = client.get("/api/flow-runs/r-1", params={"wait_for_cursor": cursor})
    folding.join()
    assert waited.status_code == 200, waited.text
    assert waited.json()["flow_run"]["state_name"] == "Scheduled"
    assert client.get("/api/flow-runs", params={"wait_for_cursor": cursor}).json()["items"][0]["id"] == "r-1"

    monkeypatch.setattr(deps, "WAIT_FOR_CURSOR_SECONDS", 0.3)
    cancelled = client.post("/api/flow-runs/r-1/cancel").json()["cursor"]
    behind = client.get("/api/flow-runs/r-1", params={"wait_for_cursor": cancelled})
    assert behind.status_code == 503 and "have not reached cursor" in behind.json()["detail"]
    past = client.get("/api/flow-runs/r-1", params={"wait_for_cursor": "999999999.1"})
    assert past.status_code == 400 and "past the end of the log" in past.json()["detail"]
    assert client.get("/api/flow-runs/r-1", params={"wait_for_cursor": "soon"}).status_code == 400


def test_cancel_appends_with_an_expected_version(client: TestClient) -> None:
    schedule_run(client, "r-1")
    reply = client.post("/api/flow-runs/r-1/cancel", json={"message": "not needed"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["type"] == "flow-run.Cancelled" and reply.json()["stream_position"] == 3
    again = client.post("/api/flow-runs/r-1/cancel")
    assert again.status_code == 409 and "Cancelled" in again.json()["detail"]
    assert client.post("/api/flow-runs/nope/cancel").status_code == 404


def cancel_after(client: TestClient, run_id: str, barrier: threading.Barrier, codes: list[int]) -> None:
    barrier.wait()
    codes.append(client.post(f"/api/flow-runs/{run_id}/cancel").status_code)


def test_two_racing_cancels_one_wins(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    first, second = make_client(run_projections=False), make_client(run_projections=False)
    # FastAPI builds each app's routes on its first request, inside warnings.catch_warnings(),
    # which is process-global: two apps building at once in one process leak a pydantic
    # warning that this suite turns into an error. A server process holds one app.
    for client in (first, second):
        assert client.post("/api/flow-runs/none/cancel").status_code == 404
    for n in range(6):
        run_id = f"race-{n}"
        schedule_run(first, run_id)
        barrier = threading.Barrier(2)
        codes: list[int] = []
        threads = [
            threading.Thread(target=cancel_after, args=(client, run_id, barrier, codes)) for client in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes) == [200, 409]
        stream = first.get("/api/events", params={"stream": f"flow-run-{run_id}"}).json()["events"]
        assert [e["type"] for e in stream].count("flow-run.Cancelled") == 1
