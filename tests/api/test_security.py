"""A local server is safe to leave running: what a web page could send it gets a 4xx and
writes nothing (CSRF, DNS rebinding), while clients that are not browsers keep working.

The attacks run against a real uvicorn server, so Host and Origin are what reach a socket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from ledgerflow.api.http.settings import ApiSettings, load_api_settings
from tests.api.conftest import append_body, wait_until

EVIL = "http://evil.example"
BODY = orjson.dumps(append_body("flow-run-r-1", "flow-run.Cancelled"))


@contextmanager
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=15) as client:
        yield client


def schedule(client: httpx.Client, run_id: str) -> None:
    created = {"flow_run_id": run_id, "flow_name": "later", "run_name": run_id}
    scheduled = {"flow_run_id": run_id, "state_type": "SCHEDULED", "state_name": "Scheduled"}
    body = {"appends": [{"stream": f"flow-run-{run_id}", "events": [
        {"type": "flow-run.created", "data": created}, {"type": "flow-run.Scheduled", "data": scheduled},
    ]}]}
    assert client.post("/api/events", json=body).status_code == 200


def log_types(client: httpx.Client) -> list[str]:
    """Every event type in the log, once a sentinel appended now is visible (so nothing
    written before it can still be on its way)."""
    client.post("/api/events", json=append_body("sentinel-1", "sentinel")).raise_for_status()
    types: list[str] = []

    def sentinel_seen() -> bool:
        types[:] = [e["type"] for e in client.get("/api/events", params={"limit": 1000}).json()["events"]]
        return "sentinel" in types

    wait_until(sentinel_seen)
    return types


def test_browser_attacks_get_a_4xx_and_write_nothing(server_url: str) -> None:
    port = server_url.rsplit(":", 1)[1]
    json_type = {"content-type": "application/json"}
    attacks: list[tuple[str, str, dict[str, Any], int]] = [
        # A <form enctype="text/plain"> or a no-cors fetch: no preflight, and an Origin header.
        ("text/plain POST from another site", "/api/events",
         {"content": BODY, "headers": {"content-type": "text/plain", "origin": EVIL}}, 403),
        ("text/plain POST without an Origin", "/api/events", {"content": BODY, "headers": {"content-type": "text/plain"}}, 415),
        ("form POST", "/api/events",
         {"content": b"appends=1", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415),
        ("a body without a Content-Type", "/api/events", {"content": BODY}, 415),
        ("JSON POST from another site", "/api/events", {"content": BODY, "headers": {**json_type, "origin": EVIL}}, 403),
        ("JSON POST from a sandboxed page", "/api/events", {"content": BODY, "headers": {**json_type, "origin": "null"}}, 403),
        ("cancel from another site", "/api/flow-runs/r-1/cancel", {"headers": {"origin": EVIL}}, 403),
        ("text/plain cancel", "/api/flow-runs/r-1/cancel", {"content": b"", "headers": {"content-type": "text/plain"}}, 415),
        # DNS rebinding: evil.example now resolves to 127.0.0.1, so the page is "same-origin".
        ("rebound POST", "/api/events",
         {"content": BODY, "headers": {**json_type, "host": f"evil.example:{port}", "origin": f"{EVIL}:{port}"}}, 400),
        ("rebound cancel", "/api/flow-runs/r-1/cancel",
         {"headers": {"host": f"evil.example:{port}", "origin": f"{EVIL}:{port}"}}, 400),
    ]
    with http(server_url) as client:
        schedule(client, "r-1")
        for name, path, request, status in attacks:
            reply = client.post(path, **request)
            assert reply.status_code == status, (name, reply.status_code, reply.text)
        rebound_read = client.get("/api/events", headers={"host": f"evil.example:{port}"})
        assert rebound_read.status_code == 400  # nor can a rebound page read the log
        assert log_types(client) == ["flow-run.created", "flow-run.Scheduled", "sentinel"]


def test_refusals_say_what_to_do(server_url: str) -> None:
    with http(server_url) as client:
        wrong_type = client.post("/api/events", content=BODY, headers={"content-type": "text/plain"})
        assert "application/json" in wrong_type.json()["detail"]
        foreign = client.post("/api/events", json={}, headers={"origin": EVIL})
        assert EVIL in foreign.json()["detail"] and "LEDGERFLOW_CORS_ORIGINS" in foreign.json()["detail"]


def test_the_servers_own_origin_and_local_names_are_answered(server_url: str) -> None:
    port = server_url.rsplit(":", 1)[1]
    with http(server_url) as client:
        # A dashboard served by the server itself posts with its own origin.
        own = client.post("/api/events", json=append_body("s-1", "a"), headers={"origin": server_url})
        assert own.status_code == 200, own.text
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        # Reads from another page are not refused by the server; the browser keeps their answer
        # from the page, since no CORS header allows it.
        read = client.get("/api/events", headers={"origin": EVIL})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
        # Requests without a body, from clients that are not browsers, pass.
        schedule(client, "r-2")
        assert client.post("/api/flow-runs/r-2/cancel").status_code == 200


def test_cors_is_closed_by_default_and_opens_for_configured_origins(make_server: Callable[..., str]) -> None:
    dashboard = "https://dash.example.com"
    preflight = {"origin": dashboard, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type, authorization"}
    with http(make_server()) as closed:
        refused = closed.options("/api/events", headers=preflight)
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    with http(make_server(cors_origins=(dashboard,))) as opened:
        allowed = opened.options("/api/events", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == dashboard
        written = opened.post("/api/events", json=append_body("s-1", "a"), headers={"origin": dashboard})
        assert written.status_code == 200 and written.headers["access-control-allow-origin"] == dashboard
        assert opened.post("/api/events", json=append_body("s-1", "b"), headers={"origin": EVIL}).status_code == 403
        assert log_types(opened) == ["a", "sentinel"]


def test_more_host_names_can_be_allowed(make_server: Callable[..., str]) -> None:
    url = make_server(allowed_hosts=("ledger.internal", "*.corp.example"))
    with http(url) as client:
        for host in ("ledger.internal", "ci.corp.example:4300"):
            assert client.get("/health", headers={"host": host}).status_code == 200, host
        assert client.get("/health", headers={"host": "ledger.internal.evil.example"}).status_code == 400


def test_websocket_handshakes_from_another_site_are_refused(server_url: str) -> None:
    ws_url = server_url.replace("http", "ws") + "/api/events/ws?after=0.0"
    with pytest.raises(InvalidStatus) as refused:
        with connect(ws_url, origin=Origin(EVIL), open_timeout=10):
            pass
    assert refused.value.response.status_code == 403
    with http(server_url) as client:
        client.post("/api/events", json=append_body("s-1", "hello")).raise_for_status()
    with connect(ws_url, origin=Origin(server_url), open_timeout=10) as ws:
        assert orjson.loads(ws.recv(timeout=10))["type"] == "hello"


def test_the_builtin_runners_runs_reach_the_server_on_its_own_address_with_a_key_of_its_own() -> None:
    assert ApiSettings(host="127.0.0.1", port=4301).own_url == "http://127.0.0.1:4301"
    assert ApiSettings(host="0.0.0.0", port=80).own_url == "http://127.0.0.1:80"  # a wildcard: loopback
    assert ApiSettings(host="::", port=80).own_url == "http://[::1]:80"
    assert ApiSettings(host="fd00::1", port=80).own_url == "http://[fd00::1]:80"
    api = ApiSettings()
    assert api.runner_key != ApiSettings().runner_key and api.runner_key not in repr(api)
    assert ApiSettings.model_validate_json(api.model_dump_json()).runner_key == api.runner_key  # --workers N


def test_settings_read_allowed_hosts_and_origins_from_the_environment() -> None:
    environ = {"LEDGERFLOW_ALLOWED_HOSTS": " ledger.internal, *.corp.example ,",
               "LEDGERFLOW_CORS_ORIGINS": "https://dash.example.com/,http://localhost:3000"}
    api = load_api_settings(environ, "10.1.2.3", 4300)
    assert api.allowed_hosts == ("ledger.internal", "*.corp.example")
    assert api.cors_origins == ("https://dash.example.com", "http://localhost:3000")
    assert api.trusted_hosts == ["localhost", "127.0.0.1", "[::1]", "10.1.2.3", "ledger.internal", "*.corp.example"]
    assert "0.0.0.0" not in ApiSettings(host="0.0.0.0").trusted_hosts  # a wildcard bind names no host
    assert "[fd00::1]" in ApiSettings(host="fd00::1").trusted_hosts
    with pytest.raises(ValueError, match="LEDGERFLOW_CORS_ORIGINS: 'dash.example.com' is not an origin"):
        load_api_settings({"LEDGERFLOW_CORS_ORIGINS": "dash.example.com"})
    with pytest.raises(ValueError, match="LEDGERFLOW_ALLOWED_HOSTS: 'ledger.\\*' is not a host name"):
        load_api_settings({"LEDGERFLOW_ALLOWED_HOSTS": "ledger.*"})


def test_server_start_refuses_a_bad_origin_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_CORS_ORIGINS": "dash.example.com"}
    started = subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", "server", "start", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert started.returncode == 1
    assert "LEDGERFLOW_CORS_ORIGINS" in started.stderr and "Traceback" not in started.stderr
