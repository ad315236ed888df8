"""The engine as a service on the durable consumer, on both databases: inside the API server
(rules and blocks created over HTTP, a failure appended over HTTP, the webhook received), and
alone with an injected clock for a proactive rule."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.events import Cursor, EventStore, NewEvent, gcpause
from ledgerflow.notifications.blocks import parse_block
from ledgerflow.notifications.dispatch import RetryPolicy
from ledgerflow.notifications.engine import AutomationEngine
from ledgerflow.notifications.service import automation_service
from ledgerflow.notifications.signing import verify
from tests.api.conftest import serving, settings_for
from tests.notifications.history import Runs
from tests.notifications.receivers import HttpReceiver, serving_http, wait_until
from tests.notifications.support import Clock, blocks_in, create_automation, outcomes_of


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


def test_the_server_runs_the_engine(tmp_path: Path, store_url: str, receiver: tuple[HttpReceiver, str]) -> None:
    app, url = receiver
    server_app = create_app(settings_for(tmp_path, store_url), ApiSettings(run_projections=False))
    with serving(server_app) as server, httpx.Client(base_url=server) as http:
        made = http.post("/api/blocks", json={"name": "pager", "type": "webhook",
                                              "fields": {"url": f"{url}/hook", "secret": "pager-secret"}})
        assert made.status_code == 201, made.text
        rule = {"name": "page", "trigger": {"match": {"events": ["flow-run.Failed"], "flow_name": "etl"}},
                "actions": [{"type": "webhook", "block": "pager", "body": '{"run": "{{ flow_run.id }}"}'}]}
        assert http.post("/api/automations", json=rule).status_code == 201
        run = "0e1f5c4a-0000-4000-8000-000000000001"
        appended = http.post("/api/events", json={"appends": [{"stream": f"flow-run-{run}", "events": [
            {"type": "flow-run.created", "data": {"flow_run_id": run, "flow_name": "etl", "run_name": "etl-1"}},
            {"type": "flow-run.Failed", "data": {"flow_run_id": run, "state_type": "FAILED", "state_name": "Failed"}},
        ]}]})
        assert appended.status_code in (200, 201), appended.text
        wait_until(lambda: len(app.at("/hook")) == 1, what="the webhook")
        [hook] = app.at("/hook")
        assert orjson.loads(hook.body) == {"run": run}
        assert verify("pager-secret", hook.headers["x-ledgerflow-timestamp"], hook.body, hook.headers["x-ledgerflow-signature"])
        wait_until(lambda: "action.succeeded" in [e["type"] for e in http.get("/api/automations/page/firings").json()])


PROACTIVE = """
name: late
trigger:
  posture: proactive
  after: [flow-run.Running]
  match: {events: [flow-run.Completed]}
  within: 60
actions: [{type: slack, block: ops, text: "{{ flow_run.run_name }} is late"}]
"""


def test_proactive_rule_on_the_service_clock(
    store: EventStore, tmp_path: Path, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    blocks = blocks_in(store, tmp_path)
    blocks.create("ops", parse_block("slack-webhook", {"url": f"{url}/slack"}))
    automation = create_automation(store, PROACTIVE)
    start = time.time()
    clock = Clock(start)
    service = automation_service(store, blocks, clock=clock, settle=0.0, tick_every=0.02,
                                 retry=RetryPolicy(attempts=2, first_delay=0.01))
    service.start()
    try:
        runs = Runs(store, datetime.fromtimestamp(start, UTC))
        late, on_time = runs.created(0, "etl"), runs.created(0, "etl")
        runs.state(late, "Running", 0)
        runs.state(on_time, "Running", 0)
        runs.state(on_time, "Completed", 30)
        runs.settled()
        wait_until(lambda: _handled(service.engine, runs), what="the engine has the runs")
        clock.now = start + 61
        wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="the late run's alert")
    finally:
        service.stop()
    [message] = app.at("/slack")
    assert orjson.loads(message.body) == {"text": f"etl-{late[-6:]} is late"}


def _handled(engine: AutomationEngine, runs: Runs) -> bool:
    assert runs.last is not None
    return engine.cursor >= Cursor.parse(runs.last.cursor)


WATCHES_CUSTOM = """
name: custom
trigger: {match: {events: ["custom.thing"]}}
actions: [{type: slack, block: ops, text: "{{ event.data.n }}"}]
"""


def test_the_engine_reads_the_types_its_rules_look_at_and_follows_rule_changes(
    store: EventStore, tmp_path: Path, receiver: tuple[HttpReceiver, str],
) -> None:
    app, url = receiver
    blocks = blocks_in(store, tmp_path)
    blocks.create("ops", parse_block("slack-webhook", {"url": f"{url}/slack"}))
    create_automation(store, WATCHES_CUSTOM.replace("custom.thing", "flow-run.Failed").replace("name: custom", "name: failures"))
    service = automation_service(store, blocks, settle=0.0, retry=RetryPolicy(attempts=2, first_delay=0.01))
    assert service.engine.hold()
    assert "custom.thing" not in (service.consumer.types or [])
    assert "flow-run.Failed" in (service.consumer.types or [])
    assert "automation.triggered" not in (service.consumer.types or [])  # its own firings: not read back
    # In one batch: a custom event no rule watches, the rule that watches it, then a custom
    # event after the rule. The batch was read without the custom type, so the rule's creation
    # ends it and the rest is read again with it.
    store.append("custom", [NewEvent(type="custom.thing", data={"n": 1})])
    automation = create_automation(store, WATCHES_CUSTOM)
    [last] = store.append("custom", [NewEvent(type="custom.thing", data={"n": 2})])
    wait_until(lambda: Cursor.parse(store.head()) >= Cursor.parse(last.cursor), what="the feed shows the events")
    service.start()
    try:
        wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="the alert on the event after the rule")
        assert "custom.thing" in (service.consumer.types or [])
        wait_until(lambda: service.consumer.checkpoint() >= Cursor.parse(last.cursor), what="the checkpoint past it")
    finally:
        service.stop()
    assert [orjson.loads(m.body)["text"] for m in app.at("/slack")] == ["2"]



def test_the_server_freezes_the_heap_it_started_with_once(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcpause, "_frozen", False)  # as in a fresh process
    gc.unfreeze()  # whatever an earlier test in this process froze
    setup: list[object] = []  # made before the start, tracked by the collector
    assert any(obj is setup for obj in gc.get_objects())
    server_app = create_app(settings_for(tmp_path, store_url), ApiSettings(run_projections=False))
    with serving(server_app):
        assert gc.get_freeze_count() > 0
        assert not any(obj is setup for obj in gc.get_objects())  # frozen: out of the collections' reach
        later: list[object] = []
        gcpause.freeze_startup_heap()  # a second call (another server in this process) freezes nothing more
        assert any(obj is later for obj in gc.get_objects())
