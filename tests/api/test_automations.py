"""`/api/automations` and `/api/blocks` on both databases: CRUD, refusals naming the field,
secrets never returned, the backtest, and `SlackWebhook.load(...).notify()` through the server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from ledgerflow.events import open_store
from ledgerflow.notifications import RemoteSlackWebhook, SlackWebhook
from ledgerflow.notifications.blocks import BlockStore
from ledgerflow.notifications.secretbox import SecretBox, load_keys
from tests.notifications.history import Runs
from tests.notifications.receivers import HttpReceiver, serving_http, wait_until

RULE = {
    "name": "etl-failures",
    "trigger": {"match": {"events": ["flow-run.Failed"], "flow_name": "nightly-etl"}, "cooldown": 600},
    "actions": [{"type": "slack", "block": "ops", "text": "{{ flow_run.flow_name }} failed: {{ event.data.message }}"}],
}
SLACK_URL = "https://hooks.slack.com/services/T0/B0/top-secret-token"


def test_automation_crud(client: TestClient) -> None:
    made = client.post("/api/automations", json=RULE)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "etl-failures" and body["enabled"] is True and body["trigger"]["posture"] == "reactive"
    assert client.post("/api/automations", json=RULE).status_code == 409
    wait_until(lambda: [a["name"] for a in client.get("/api/automations").json()] == ["etl-failures"])
    assert client.get(f"/api/automations/{body['id']}").json()["name"] == "etl-failures"
    assert client.post("/api/automations/etl-failures/disable").json()["enabled"] is False
    assert client.post("/api/automations/etl-failures/enable").json()["enabled"] is True
    changed = client.put("/api/automations/etl-failures", json={**RULE, "description": "pages on-call"})
    assert changed.json()["description"] == "pages on-call" and changed.json()["id"] == body["id"]
    assert client.get("/api/automations/etl-failures/firings").json() == []
    assert client.delete("/api/automations/etl-failures").status_code == 204
    missing = client.get("/api/automations/etl-failures")
    assert missing.status_code == 404 and "no automation named" in missing.json()["detail"]


@pytest.mark.parametrize(("change", "named"), [
    ({"trigger": {"match": {"events": ["flow-run.Failed"]}, "threshold": 0}}, "trigger.reactive.threshold"),
    ({"actions": [{"type": "slack", "block": "ops", "text": "{{ broken"}]}, "actions.0.slack.text: template error"),
    ({"actions": [{"type": "email", "block": "mail", "to": ["x"]}]}, "actions.0.email.to.0"),
    ({"actions": []}, "actions"),
    ({"trigger": {"posture": "proactive", "match": {"events": ["x"]}, "within": 10}}, "trigger.proactive.after"),
])
def test_malformed_rules_are_refused_naming_the_field(client: TestClient, change: dict[str, object], named: str) -> None:
    refused = client.post("/api/automations", json={**RULE, **change})
    assert refused.status_code == 422
    assert named in refused.json()["detail"]
    assert client.get("/api/automations").json() == []


def test_blocks_are_never_returned_in_full(client: TestClient) -> None:
    made = client.post("/api/blocks", json={"name": "ops", "type": "slack-webhook", "fields": {"url": SLACK_URL}})
    assert made.status_code == 201, made.text
    assert made.json()["fields"] == {"url": "https://hooks.slack.com/…/oken"}
    client.post("/api/blocks", json={"name": "mail", "type": "smtp",
                                     "fields": {"host": "smtp.example.com", "username": "bot", "password": "pw-123456"}})
    assert client.post("/api/blocks", json={"name": "ops", "type": "slack-webhook", "fields": {"url": SLACK_URL}}).status_code == 409
    bad = client.post("/api/blocks", json={"name": "x", "type": "webhook", "fields": {"url": "https://x.example.com"}})
    assert bad.status_code == 422 and "secret" in bad.json()["detail"]
    listed = client.get("/api/blocks")
    text = listed.text + client.get("/api/blocks/mail").text + client.get("/api/blocks/ops").text
    assert "top-secret-token" not in text and "pw-123456" not in text
    assert [b["name"] for b in listed.json()] == ["mail", "ops"]
    assert client.delete("/api/blocks/mail").status_code == 204
    assert client.get("/api/blocks/mail").status_code == 404


def test_backtest_over_http(client: TestClient, store_url: str) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    store = open_store(store_url)
    try:
        runs = Runs(store, base)
        runs.failed_run(0, "nightly-etl", "disk full")
        runs.failed_run(10, "nightly-etl", "within the cooldown")
    finally:
        store.close()
    result = client.post("/api/automations/test", json={"rule": RULE})
    assert result.status_code == 200, result.text
    [firing] = result.json()["firings"]
    assert firing["actions"][0]["message"] == {"text": "nightly-etl failed: disk full"}
    assert client.post("/api/automations/test", json={"rule": RULE, "since": datetime.now(UTC).isoformat()}).json() == {"firings": []}
    assert client.get("/api/automations").json() == []  # a backtest creates nothing


def test_flow_code_notifies_through_the_server(
    make_server: Callable[..., str], tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = HttpReceiver()
    with serving_http(receiver) as slack:
        server = make_server(run_projections=False)
        import httpx

        created = httpx.post(f"{server}/api/blocks", json={"name": "ops", "type": "slack-webhook",
                                                           "fields": {"url": f"{slack}/services/abc"}})
        assert created.status_code == 201, created.text
        monkeypatch.setenv("LEDGERFLOW_API_URL", server)
        handle = SlackWebhook.load("ops")
        assert isinstance(handle, RemoteSlackWebhook)
        handle.notify("nightly ETL done", blocks=[{"type": "divider"}])
        [got] = receiver.at("/services/abc")
        assert orjson.loads(got.body) == {"text": "nightly ETL done", "blocks": [{"type": "divider"}]}
        from ledgerflow.notifications import BlockNotFound

        with pytest.raises(BlockNotFound):
            SlackWebhook.load("nope").notify("x")
    # The block is encrypted with the server's key (generated into its home), not readable with another.
    store = open_store(store_url)
    try:
        assert isinstance(BlockStore.of(store, SecretBox(load_keys(None, tmp_path))).get("ops"), SlackWebhook)
    finally:
        store.close()
