"""The server's built-in runner on PostgreSQL: its run processes talk to the server, not to
the database, so many runs at once fit a small connection budget; with auth on they present
the server's own key, of scope worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from ledgerflow.api.http.app import create_app
from ledgerflow.events import ANY, EventStore, NewEvent, StreamAppend, open_store
from ledgerflow.events.runs import read_flow_run, request_flow_run
from ledgerflow.runtime.spool import Spool
from tests.api.conftest import api_settings, free_port, serving, settings_for, wait_until
from tests.deployments.test_concurrency_and_serve import FLOWS, REPO, state_name

RUNS = 40
BUDGET = 45
"""Connections the server's role may hold: a bound on the server's own pools, fewer than
RUNS run processes would open with one store each."""


@pytest.fixture
def limited_url(postgres_server_url: str, postgres_schema_url: str) -> Iterator[str]:
    """The test's schema, reached as a role with a CONNECTION LIMIT of BUDGET."""
    role = f"lf_{uuid.uuid4().hex[:10]}"
    schema = make_url(postgres_schema_url).query["options"].removeprefix("-csearch_path=")  # type: ignore[union-attr]
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}' CONNECTION LIMIT {BUDGET}")
        conn.execute(f"GRANT ALL ON SCHEMA {schema} TO {role}")
    yield make_url(postgres_schema_url).set(username=role, password=role).render_as_string(hide_password=False)
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        conn.execute(f"DROP OWNED BY {role} CASCADE")
        conn.execute(f"DROP ROLE {role}")


def test_runs_at_once_do_not_open_connections_of_their_own(limited_url: str, postgres_schema_url: str,
                                                           tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    port = free_port()
    app = create_app(settings_for(tmp_path / "server", limited_url),
                     api_settings(port=port, run_runner=True, runner_concurrency=RUNS))
    with serving(app, port), open_store(postgres_schema_url) as store:
        ids = [str(request_flow_run(store, flow_name="gated", entrypoint=f"{FLOWS}:gated", working_dir=str(REPO),
                                    parameters={"gate": str(gate)}).data["flow_run_id"])
               for _ in range(RUNS)]
        # Every run running at once, each in its own process, the server within its budget.
        wait_until(lambda: all(state_name(store, run_id) == "Running" for run_id in ids), timeout=300)
        gate.touch()
        wait_until(lambda: all(state_name(store, run_id) == "Completed" for run_id in ids), timeout=120)
        assert all(executed_once(store, run_id) for run_id in ids)


def executed_once(store: EventStore, run_id: str) -> bool:
    return [e.type for e in read_flow_run(store, run_id).events].count("flow-run.Pending") == 1


def test_with_auth_on_the_runs_present_the_servers_own_key(postgres_schema_url: str, tmp_path: Path) -> None:
    port = free_port()
    api = api_settings(port=port, auth=True, run_runner=True)
    with serving(create_app(settings_for(tmp_path / "server", postgres_schema_url), api), port) as url, \
            open_store(postgres_schema_url) as store:
        assert httpx.post(f"{url}/api/events", json={"appends": []}).status_code == 401
        run_id = str(request_flow_run(store, flow_name="double", entrypoint=f"{FLOWS}:double", working_dir=str(REPO),
                                      parameters={"n": 21}).data["flow_run_id"])
        wait_until(lambda: state_name(store, run_id) == "Completed", timeout=120)
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {api.runner_key}"}) as runner:
            assert runner.get("/api/whoami").json() == {"name": "built-in runner", "scope": "worker", "auth": True}
            assert runner.post("/api/deployments", json={}).status_code == 403  # a worker's scope, no more


def test_a_starting_server_stores_what_its_runs_kept_in_the_spool(store_url: str, tmp_path: Path) -> None:
    """Runs go on through the server's shutdown, when it no longer takes their events."""
    home = tmp_path / "server"
    Spool.in_home(home).append([StreamAppend("spooled", [NewEvent(type="note", data={"n": 1})], ANY)])
    port = free_port()
    with serving(create_app(settings_for(home, store_url), api_settings(port=port, run_runner=True)), port), \
            open_store(store_url) as store:
        assert [e.type for e in store.read_stream("spooled")] == ["note"]
    assert Spool.in_home(home).pending() == 0
