"""`ledgerflow concurrency-limit ...` on the database and through a server, and
`/api/concurrency-limits`; slots taken through the server in remote mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledgerflow.api.cli.main import app as cli
from ledgerflow.events import open_store
from ledgerflow.runtime.concurrency import AcquireConcurrencySlotTimeoutError, Slots
from ledgerflow.runtime.remote import HttpEventLog


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["concurrency-limit", *args], env=env)
    return result.exit_code, result.output


def test_cli_creates_lists_resizes_and_deletes_limits(tmp_path: Path, store_url: str) -> None:
    env = {"LEDGERFLOW_DATABASE_URL": store_url, "LEDGERFLOW_HOME": str(tmp_path)}
    assert _cli(env, "create", "db", "3") == (0, "concurrency limit db: 3 slot(s)\n")
    assert _cli(env, "create", "api", "2", "--slot-decay-per-second", "0.5")[0] == 0
    with open_store(store_url) as store:
        slots = Slots(store)
        holder = slots.acquire("db", 2, "migration")
        code, listed = _cli(env, "ls")
        assert code == 0
        rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
        assert rows["db"][:3] == ["db", "3", "2"] and "migration@" in listed and "(2 slots)" in listed
        assert rows["api"][:4] == ["api", "2", "0", "0.5"]
        assert holder is not None
        slots.release("db", holder)
        slots.close()
    assert _cli(env, "create", "db", "5")[0] == 0  # the same command resizes
    assert '"limit": 5' in _cli(env, "inspect", "db")[1]
    assert _cli(env, "delete", "db") == (0, "deleted concurrency limit db\n")
    code, listed = _cli(env, "ls")
    assert "db" not in listed.split() and "api" in listed.split()


def test_cli_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path: Path, store_url: str) -> None:
    env = {"LEDGERFLOW_DATABASE_URL": store_url, "LEDGERFLOW_HOME": str(tmp_path), "COLUMNS": "200"}
    code, output = _cli(env, "create", "has space", "3")
    assert code == 1 and "concurrency limit name 'has space' must be" in output
    code, output = _cli(env, "delete", "nope")
    assert code == 1 and "no concurrency limit 'nope'" in output
    code, output = _cli(env, "inspect", "nope")
    assert code == 1 and "no concurrency limit 'nope'" in output
    assert _cli(env, "create", "db", "-1")[0] == 2  # typer refuses it before anything runs
    with open_store(store_url) as store:
        assert store.read_all() == []


def test_api_creates_lists_and_deletes_with_clear_errors(client: TestClient) -> None:
    made = client.post("/api/concurrency-limits", json={"name": "db", "limit": 3})
    assert made.status_code == 200 and made.json() == {
        "name": "db", "limit": 3, "slot_decay_per_second": 0.0, "active_slots": 0.0, "holders": []}
    assert [item["name"] for item in client.get("/api/concurrency-limits").json()] == ["db"]
    assert client.get("/api/concurrency-limits/db").json()["limit"] == 3
    bad_name = client.post("/api/concurrency-limits", json={"name": "a b", "limit": 1})
    assert bad_name.status_code == 422 and "must be 1-180 characters" in bad_name.json()["detail"]
    assert client.post("/api/concurrency-limits", json={"name": "x", "limit": -1}).status_code == 422
    assert client.post("/api/concurrency-limits", json={"name": "x", "limit": 1, "extra": 1}).status_code == 422
    missing = client.delete("/api/concurrency-limits/nope")
    assert missing.status_code == 404 and "no concurrency limit 'nope'" in missing.json()["detail"]
    assert client.get("/api/concurrency-limits/nope").status_code == 404
    assert client.get("/api/streams/concurrency-limit-x").json()["events"] == []
    assert client.delete("/api/concurrency-limits/db").json() == {"deleted": "db"}
    assert client.get("/api/concurrency-limits").json() == []


def test_remote_mode_takes_slots_through_the_server(tmp_path: Path, make_server: Callable[..., str]) -> None:
    url = make_server(run_projections=False)
    env = {"LEDGERFLOW_API_URL": url, "LEDGERFLOW_HOME": str(tmp_path)}
    assert _cli(env, "create", "remote-db", "1")[0] == 0
    log = HttpEventLog(url)
    slots = Slots(log)
    holder = slots.acquire("remote-db", 1, "far-away")
    code, listed = _cli(env, "ls")
    assert code == 0 and "far-away@" in listed
    other_log = HttpEventLog(url)
    other = Slots(other_log)
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        other.acquire("remote-db", 1, "second", timeout=0.1)
    assert holder is not None
    slots.release("remote-db", holder)
    assert other.acquire("remote-db", 1, "second", timeout=30) is not None
    slots.close()
    other.close()
    log.close()
    other_log.close()
