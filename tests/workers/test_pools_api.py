"""Work pools and queues through the API and the CLI: CRUD, bad input (4xx / one-line error,
nothing written), scopes, and what `due-runs` hands out (pause, priorities, limits, offers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledgerflow.api.cli.main import app as cli
from ledgerflow.api.http.app import create_app
from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import apply_deployment, deployment_stream, read_deployment, run_request
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.workpools import pool_stream, worker_stream
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.deployments import build_spec
from tests.api.conftest import api_settings, local_client, settings_for, wait_until
from tests.workers.conftest import REPO


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def keys(store: EventStore) -> dict[str, str]:
    made = ApiKeys(engine_of(store))
    return {scope: made.create(scope, scope)[1] for scope in ("read", "worker", "write")}


@pytest.fixture
def client(tmp_path: Path, store_url: str, keys: dict[str, str]) -> Iterator[TestClient]:
    with local_client(create_app(settings_for(tmp_path, store_url), api_settings(auth=True))) as client:
        client.headers["authorization"] = f"Bearer {keys['write']}"
        yield client


def _as(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_pools_and_queues_are_created_listed_paused_and_resumed(client: TestClient, store: EventStore) -> None:
    created = client.post("/api/work-pools", json={"name": "gpu", "concurrency_limit": 3})
    assert created.status_code == 201, created.text
    assert created.json()["concurrency_limit"] == 3 and created.json()["paused"] is False
    queue = client.post("/api/work-pools/gpu/queues", json={"name": "urgent", "priority": 1, "concurrency_limit": 2})
    assert queue.status_code == 201, queue.text
    client.post("/api/work-pools/gpu/queues", json={"name": "bulk", "priority": 9})
    assert client.post("/api/work-pools/gpu/pause").json()["paused"] is True
    assert client.post("/api/work-pools/gpu/pause").json()["paused"] is True  # idempotent: nothing written
    assert client.post("/api/work-pools/gpu/resume").json()["paused"] is False
    assert [e.type for e in store.read_stream(pool_stream("gpu"))] == [
        "work-pool.created", "work-queue.created", "work-queue.created", "work-pool.paused", "work-pool.resumed"]

    wait_until(lambda: [len(p["queues"]) for p in client.get("/api/work-pools").json()] == [3], timeout=300)  # projected
    shown = client.get("/api/work-pools/gpu").json()
    assert [(q["name"], q["priority"], q["concurrency_limit"]) for q in shown["queues"]] == [
        ("default", 1, None), ("urgent", 1, 2), ("bulk", 9, None)]


@pytest.mark.parametrize(("path", "body", "status", "says"), [
    ("/api/work-pools", {"name": "has space"}, 422, "work pool name"),
    ("/api/work-pools", {"name": "default"}, 422, "reserved"),
    ("/api/work-pools", {"name": "p", "concurrency_limit": 0}, 422, "concurrency_limit"),
    ("/api/work-pools", {"name": "p", "colour": "red"}, 422, "colour"),
    ("/api/work-pools", {"name": "taken"}, 409, "exists already"),
    ("/api/work-pools/nope/queues", {"name": "q"}, 404, "no work pool 'nope'"),
    ("/api/work-pools/taken/queues", {"name": "q", "priority": 0}, 422, "priority"),
    ("/api/work-pools/taken/queues", {"name": "default"}, 409, "has a queue 'default'"),
    ("/api/work-pools/nope/pause", None, 404, "no work pool"),
    ("/api/work-pools/nope/due-runs", {"worker": "w"}, 404, "no work pool"),
    ("/api/work-pools/taken/due-runs", {"worker": "w", "limit": 0}, 422, "limit"),
    ("/api/workers/heartbeat", {"pool": "nope", "name": "w", "interval_seconds": 1}, 404, "no work pool"),
    ("/api/workers/heartbeat", {"pool": "taken", "name": "w", "interval_seconds": 0}, 422, "interval_seconds"),
])
def test_bad_input_gets_a_4xx_with_one_line_and_writes_nothing(
    client: TestClient, store: EventStore, path: str, body: object, status: int, says: str,
) -> None:
    assert client.post("/api/work-pools", json={"name": "taken"}).status_code == 201
    reply = client.post(path, json=body) if body is not None else client.post(path)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert says in detail and "\n" not in detail
    written = [store.read_stream(stream) for stream in (pool_stream("p"), pool_stream("nope"), worker_stream("nope", "w"),
                                                        worker_stream("taken", "w"))]
    assert written == [[], [], [], []]
    assert [e.type for e in store.read_stream(pool_stream("taken"))] == ["work-pool.created"]


def test_scopes_a_worker_key_polls_and_reports_but_does_not_manage_pools(client: TestClient, keys: dict[str, str]) -> None:
    assert client.post("/api/work-pools", json={"name": "p"}).status_code == 201
    worker, read = _as(keys["worker"]), _as(keys["read"])
    assert client.post("/api/work-pools", json={"name": "q"}, headers=worker).status_code == 403
    assert client.post("/api/work-pools/p/due-runs", json={"worker": "w"}, headers=worker).json() == []
    beat = {"pool": "p", "name": "w", "interval_seconds": 5}
    assert client.post("/api/workers/heartbeat", json=beat, headers=worker).status_code == 204
    assert client.post("/api/workers/heartbeat", json=beat, headers=read).status_code == 403
    assert client.post("/api/work-pools/p/due-runs", json={"worker": "w"}, headers=read).status_code == 403
    wait_until(lambda: len(client.get("/api/workers", headers=read).json()) == 1, timeout=300)
    [shown] = client.get("/api/workers", headers=read).json()
    assert (shown["name"], shown["pool"], shown["status"], shown["running"]) == ("w", "p", "online", [])


def test_due_runs_follow_pause_priority_limits_and_are_handed_out_once(client: TestClient, store: EventStore) -> None:
    client.post("/api/work-pools", json={"name": "p", "concurrency_limit": 3})
    client.post("/api/work-pools/p/queues", json={"name": "hi", "priority": 1})
    client.post("/api/work-pools/p/queues", json={"name": "lo", "priority": 5, "concurrency_limit": 1})
    runs: dict[str, list[str]] = {}
    for queue in ("lo", "hi"):
        spec = build_spec("tests/workers/flows.py:mark", name=queue, working_dir=REPO, parameters={"folder": "x"},
                          work_pool="p", work_queue=queue)
        deployment = apply_deployment(store, spec).deployment
        ids = [new_id() for _ in range(3)]
        store.append_streams([run_request(deployment, {"folder": "x"}, flow_run_id=run_id, scheduled_time=utcnow(),
                                          actor="test") for run_id in ids])
        runs[queue] = [str(run_id) for run_id in ids]
    wait_until(lambda: client.get("/api/work-pools/p").json().get("due") == 6, timeout=300)  # 404 until projected

    client.post("/api/work-pools/p/pause")
    assert client.post("/api/work-pools/p/due-runs", json={"worker": "a", "limit": 10}).json() == []
    client.post("/api/work-pools/p/resume")

    handed = client.post("/api/work-pools/p/due-runs", json={"worker": "a", "limit": 2}).json()
    first = [r["id"] for r in handed]
    assert first == runs["hi"][:2]  # the queue of priority 1 first, soonest due first
    # Each with what its run's process reads first: the run's stream and its deployment's.
    hi = read_deployment(store, "mark/hi")
    assert hi is not None
    for run in handed:
        run_stream, hi_stream = flow_run_stream(run["id"]), deployment_stream(hi.id)
        assert set(run["streams"]) == {run_stream, hi_stream}
        for name in (run_stream, hi_stream):
            assert [e["id"] for e in run["streams"][name]] == [str(e.id) for e in store.read_stream(name)]
    second = [(r["id"], r["queue"]) for r in client.post("/api/work-pools/p/due-runs", json={"worker": "b", "limit": 10}).json()]
    assert second == [(runs["hi"][2], "hi")]  # pool limit 3: two held for worker a, one more
    assert client.post("/api/work-pools/p/due-runs", json={"worker": "c", "limit": 10}).json() == []


def test_cli_manages_pools_and_queues_with_one_line_errors(tmp_path: Path, store_url: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")},
           "LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": store_url}
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env)
        return result.exit_code, result.output

    assert run("work-pool", "create", "etl", "--concurrency", "4") == (0, "created work pool etl (concurrency 4)\n")
    assert run("work-queue", "create", "fast", "--pool", "etl", "--priority", "1")[0] == 0
    assert run("work-pool", "pause", "etl") == (0, "work pool etl paused\n")
    code, listed = run("work-pool", "ls")
    assert code == 0 and listed.splitlines()[1].split() == ["etl", "paused", "4", "default,", "fast", "0", "0"]
    code, shown = run("work-queue", "ls", "--pool", "etl")
    assert code == 0 and "fast" in shown
    assert run("work-pool", "resume", "etl") == (0, "work pool etl active\n")
    for args, says in (
        (("work-pool", "create", "etl"), "work pool 'etl' exists already"),
        (("work-pool", "create", "a/b"), "a work pool name is"),
        (("work-pool", "inspect", "nope"), "no work pool 'nope'"),
        (("work-queue", "create", "q", "--pool", "nope"), "no work pool 'nope'"),
        (("work-queue", "create", "fast", "--pool", "etl"), "has a queue 'fast' already"),
        (("worker", "start", "--pool", "etl"), "set LEDGERFLOW_API_URL"),
    ):
        code, output = run(*args)
        assert code == 1 and output.startswith("error: ") and says in output.splitlines()[0], output
    code, workers = run("worker", "ls")
    assert code == 0 and "no workers yet" in workers
