"""API keys: hashed at rest, shown once, scoped, revocable; 401 without, 403 with too little."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledgerflow.api.cli import app as cli
from ledgerflow.api.keys import ApiKeys
from ledgerflow.api.http.settings import load_api_settings
from ledgerflow.events import open_store
from ledgerflow.projections.runner import engine_of
from tests.api.conftest import append_body


def keys_for(store_url: str) -> tuple[ApiKeys, Callable[[], None]]:
    store = open_store(store_url)
    return ApiKeys(engine_of(store)), store.close


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_scopes_are_enforced_and_revocation_works(make_client: Callable[..., TestClient], store_url: str) -> None:
    client = make_client(auth=True, run_projections=False)
    keys, close = keys_for(store_url)
    try:
        _, reader = keys.create("dashboard", "read")
        writer_key, writer = keys.create("worker", "write")
        _, admin = keys.create("ops", "admin")
        assert client.get("/health").status_code == 200
        assert client.get("/api/events").status_code == 401
        assert client.get("/api/events", headers=bearer("lf_guessed")).status_code == 401
        assert client.get("/api/events", headers=bearer(reader)).status_code == 200
        assert client.get("/metrics", headers=bearer(reader)).status_code == 200
        assert client.get("/api/flow-runs", headers={"x-api-key": reader}).status_code == 200
        refused = client.post("/api/events", json=append_body("s-1", "a"), headers=bearer(reader))
        # Appending events needs a `worker` key or above: a worker's run processes stream through it.
        assert refused.status_code == 403 and "needs worker" in refused.json()["detail"]
        assert client.post("/api/events", json=append_body("s-1", "a"), headers=bearer(writer)).status_code == 200
        assert client.get("/api/api-keys", headers=bearer(writer)).status_code == 403
        listed = client.get("/api/api-keys", headers=bearer(admin)).json()
        assert {k["name"] for k in listed} == {"dashboard", "worker", "ops"}
        assert all(writer not in str(k) for k in listed)

        keys.revoke(writer_key.id)
        assert client.post("/api/events", json=append_body("s-1", "b"), headers=bearer(writer)).status_code == 401
    finally:
        close()


def test_only_a_hash_is_stored(store_url: str) -> None:
    keys, close = keys_for(store_url)
    try:
        key, secret = keys.create("ci", "write")
        with keys.engine.connect() as conn:
            rows = [tuple(row) for row in conn.exec_driver_sql("SELECT * FROM api_keys")]
        assert all(secret not in str(value) for row in rows for value in row)
        assert any(hashlib.sha256(secret.encode()).hexdigest() in row for row in rows)
        assert keys.authenticate(secret) == key
    finally:
        close()


def test_auth_defaults_on_away_from_loopback() -> None:
    assert load_api_settings({}, "127.0.0.1").auth is False
    assert load_api_settings({}, "::1").auth is False
    assert load_api_settings({}, "0.0.0.0").auth is True
    assert load_api_settings({"LEDGERFLOW_AUTH": "on"}, "127.0.0.1").auth is True
    assert load_api_settings({"LEDGERFLOW_AUTH": "off"}, "0.0.0.0").auth is False
    with pytest.raises(ValueError, match="LEDGERFLOW_AUTH"):
        load_api_settings({"LEDGERFLOW_AUTH": "maybe"}, "127.0.0.1")


def test_cli_creates_lists_and_revokes_keys(tmp_path: Path, store_url: str) -> None:
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": store_url}
    runner = CliRunner()
    created = runner.invoke(cli, ["api-key", "create", "--name", "nightly", "--scope", "write"], env=env)
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("lf_")
    listed = runner.invoke(cli, ["api-key", "ls"], env=env)
    assert "nightly" in listed.output and "active" in listed.output and secret not in listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["ID", "SCOPE", "STATUS", "NAME"]
    key_id = row.split()[0]
    assert runner.invoke(cli, ["api-key", "revoke", key_id], env=env).exit_code == 0
    assert "revoked" in runner.invoke(cli, ["api-key", "ls"], env=env).output
    missing = runner.invoke(cli, ["api-key", "revoke", "nope"], env=env)
    assert missing.exit_code == 1 and "no API key" in missing.output
    bad = runner.invoke(cli, ["api-key", "create", "--name", "x", "--scope", "root"], env=env)
    assert bad.exit_code != 0
