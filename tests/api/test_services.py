"""The server's background work runs as services under one supervisor, and the read model
is kept current by its projection service: a GET reads, it never folds the log itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.services import services
from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.api.http.state import ServerState
from ledgerflow.events import load_settings
from tests.api.conftest import local_client, settings_for, visible, wait_until


def run_events(run_id: str) -> dict[str, object]:
    created = {"flow_run_id": run_id, "flow_name": "etl", "run_name": run_id}
    running = {"flow_run_id": run_id, "state_type": "RUNNING", "state_name": "Running"}
    done = {"flow_run_id": run_id, "state_type": "COMPLETED", "state_name": "Completed"}
    return {"appends": [{"stream": f"flow-run-{run_id}", "events": [
        {"type": "flow-run.created", "data": created}, {"type": "flow-run.Running", "data": running},
        {"type": "flow-run.Completed", "data": done},
    ]}]}


def listed(client: TestClient) -> list[str]:
    return [run["id"] for run in client.get("/api/flow-runs").json()["items"]]


def state_of(client: TestClient) -> ServerState:
    state: ServerState = client.app.state.ledgerflow  # type: ignore[attr-defined]
    return state


def test_services_are_the_feed_and_the_configured_ones(client: TestClient) -> None:
    state = state_of(client)
    settings = load_settings({"LEDGERFLOW_HOME": "/nowhere"})
    assert [s.name for s in services(state, ApiSettings(), settings)] == [
        "feed", "projections", "crash-monitor", "scheduler", "late-runs", "runner", "automations",
    ]
    quiet = ApiSettings(run_projections=False, run_runner=False, run_automations=False, run_scheduler=False,
                        run_crash_monitor=False)
    assert [s.name for s in services(state, quiet, settings)] == ["feed"]
    assert [s.name for s in services(state, quiet.model_copy(update={"run_automations": True}), settings)] == ["feed", "automations"]


def test_the_lifespan_starts_the_services_and_stops_them(tmp_path: Path, store_url: str) -> None:
    def started_by(api: ApiSettings) -> dict[str, threading.Thread]:
        before = set(threading.enumerate())
        with local_client(create_app(settings_for(tmp_path, store_url), api)):
            started = {t.name: t for t in set(threading.enumerate()) - before if t.name.startswith("ledgerflow-")}
        assert not [name for name, thread in started.items() if thread.is_alive()]  # all stopped
        return started

    assert {"ledgerflow-feed", "ledgerflow-projections", "ledgerflow-crash-monitor", "ledgerflow-automations",
            "ledgerflow-automations-dispatch"} <= set(started_by(ApiSettings()))
    quiet = started_by(ApiSettings(run_projections=False, run_automations=False))
    assert "ledgerflow-feed" in quiet and "ledgerflow-projections" not in quiet
    assert not any("automations" in name for name in quiet)


def test_gets_read_the_projections_without_catching_up(client: TestClient) -> None:
    """`client` runs no projection service: only an explicit catch-up moves the read model."""
    assert state_of(client).read_model.catch_up is False
    assert client.post("/api/events", json=run_events("r-1")).status_code == 200
    visible(client, 3)  # in the log, readable by anyone ...
    assert listed(client) == []  # ... but a GET did not fold it into the projections
    state_of(client).read_model.runner.catch_up()
    assert listed(client) == ["r-1"]


def test_the_projection_service_keeps_the_read_model_current(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for n in range(3):
        assert client.post("/api/events", json=run_events(f"r-{n}")).status_code == 200
        wait_until(lambda n=n: f"r-{n}" in listed(client))  # type: ignore[misc]
