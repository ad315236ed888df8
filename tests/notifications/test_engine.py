"""The engine over a seeded log on both databases: firings and outcomes as events, messages
delivered to real receivers, proactive windows on an injected clock, state kept across restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ledgerflow.events import EventStore
from ledgerflow.notifications.blocks import BlockStore, parse_block
from ledgerflow.notifications.firing import automation_stream
from tests.notifications.history import Runs
from tests.notifications.receivers import HttpReceiver, serving_http, wait_until
from tests.notifications.support import Clock, blocks_in, create_automation, drained, outcomes_of, pump, running_engine


@pytest.fixture
def receiver() -> Iterator[tuple[HttpReceiver, str]]:
    app = HttpReceiver()
    with serving_http(app) as url:
        yield app, url


@pytest.fixture
def blocks(store: EventStore, tmp_path: Path, receiver: tuple[HttpReceiver, str]) -> BlockStore:
    made = blocks_in(store, tmp_path)
    made.create("ops", parse_block("slack-webhook", {"url": f"{receiver[1]}/slack"}))
    made.create("pager", parse_block("webhook", {"url": f"{receiver[1]}/hook", "secret": "secret-123"}))
    return made


REACTIVE = """
name: etl-failures
trigger: {match: {events: ["flow-run.Failed"], flow_name: nightly-etl}, for_each: run}
actions:
  - {type: slack, block: ops, text: "{{ flow_run.flow_name }} failed: {{ event.data.message }}"}
  - {type: webhook, block: pager, body: '{"run": "{{ flow_run.id }}"}'}
"""


def test_a_failure_fires_once_and_is_delivered_once(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, _ = receiver
    automation = create_automation(store, REACTIVE)
    runs = Runs(store, datetime.now(UTC))
    run, failed = runs.failed_run(0, "nightly-etl", "disk full")
    runs.failed_run(0, "other-flow", "not ours")
    runs.settled()
    clock = Clock(time.time())
    with running_engine(store, blocks, clock) as engine:
        pump(engine, store)
        wait_until(lambda: len(outcomes_of(store, automation)) == 2, what="both outcomes")
        # The outcomes come back through the log and clear the pending actions.
        wait_until(lambda: drained(engine, store), what="no pending actions")
    [slack] = app.at("/slack")
    assert orjson.loads(slack.body) == {"text": "nightly-etl failed: disk full"}
    [hook] = app.at("/hook")
    assert orjson.loads(hook.body) == {"run": run}
    history = [e.type for e in store.read_stream(automation_stream(automation.id))]
    assert history[0] == "automation.created"
    assert sorted(history[1:]) == sorted(["automation.triggered", "action.triggered", "action.triggered",
                                          "action.succeeded", "action.succeeded"])
    triggered = next(e for e in store.read_stream(automation_stream(automation.id)) if e.type == "automation.triggered")
    assert triggered.data["triggering_event"]["id"] == str(failed.id) and triggered.meta.causation_id == failed.id


PROACTIVE = """
name: etl-late
trigger:
  posture: proactive
  after: [flow-run.Running]
  match: {events: [flow-run.Completed, flow-run.Failed, flow-run.Crashed], flow_name: nightly-etl}
  within: 30
actions:
  - {type: slack, block: ops, text: "{{ flow_run.run_name }} still {{ flow_run.state_name }} after 30 s"}
"""


def test_proactive_fires_when_a_run_does_not_finish_in_time_and_not_when_it_does(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, _ = receiver
    automation = create_automation(store, PROACTIVE)
    start = time.time()
    runs = Runs(store, datetime.fromtimestamp(start, UTC))
    late = runs.created(0, "nightly-etl")
    runs.state(late, "Running", 0)
    on_time = runs.created(0, "nightly-etl")
    runs.state(on_time, "Running", 0)
    runs.settled()
    clock = Clock(start + 5)
    with running_engine(store, blocks, clock) as engine:
        pump(engine, store)
        runs.state(on_time, "Completed", 10)
        runs.settled()
        clock.now = start + 29
        pump(engine, store)
        assert outcomes_of(store, automation) == [] and app.at("/slack") == []
        clock.now = start + 31
        pump(engine, store)
        wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="the late run's alert")
        clock.now = start + 300
        pump(engine, store)
    [message] = app.at("/slack")
    assert orjson.loads(message.body) == {"text": f"nightly-etl-{late[-6:]} still Running after 30 s"}
    [fired] = [e for e in store.read_stream(automation_stream(automation.id)) if e.type == "automation.triggered"]
    assert fired.data["bucket"] == late and fired.data["posture"] == "proactive"


STORM = """
name: storm
trigger: {match: {events: ["flow-run.Failed"]}, cooldown: 600}
actions: [{type: slack, block: ops, text: "failures: {{ event.data.message }}"}]
"""


def test_a_storm_of_failures_sends_one_alert_and_redelivery_adds_nothing(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, _ = receiver
    automation = create_automation(store, STORM)
    runs = Runs(store, datetime.now(UTC))
    for n in range(60):
        runs.failed_run(n / 10, f"flow-{n % 7}", f"failure {n}")
    runs.settled()
    with running_engine(store, blocks, Clock(time.time())) as engine:
        pump(engine, store)
        wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="one alert")
        # At-least-once delivery hands a batch over again: the state's cursor skips it.
        assert engine.handle(store.read_all(limit=10_000)) == 0
        pump(engine, store)
    assert [orjson.loads(m.body)["text"] for m in app.at("/slack")] == ["failures: failure 0"]


def test_a_firing_recorded_before_a_crash_is_delivered_once_after_the_restart(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    from ledgerflow.notifications.dispatch import Dispatcher
    from ledgerflow.notifications.engine import AutomationEngine

    app, _ = receiver
    automation = create_automation(store, REACTIVE)
    runs = Runs(store, datetime.now(UTC))
    runs.failed_run(0, "nightly-etl", "disk full")
    runs.settled()
    never_started = Dispatcher(lambda client: None, lambda outcomes: None)  # type: ignore[arg-type, return-value]
    crashed = AutomationEngine(store, blocks.engine, never_started, settle=0.0)
    crashed.load()
    pump(crashed, store)  # fired and recorded, then "killed" before any delivery
    assert len(crashed.pending) == 2 and app.received == []
    for _ in range(2):  # restarted twice: delivered by the first, nothing more by the second
        with running_engine(store, blocks, Clock(time.time())) as engine:
            assert len(engine.pending) in (0, 2)
            pump(engine, store)
            wait_until(lambda: len(outcomes_of(store, automation)) == 2, what="both outcomes")
            wait_until(lambda: drained(engine, store), what="no pending actions")
    assert len(app.at("/slack")) == 1 and len(app.at("/hook")) == 1


EVERY = """
name: every-failure
trigger: {match: {events: ["flow-run.Failed"]}}
actions: [{type: slack, block: ops, text: "{{ event.data.message }}"}]
"""


def test_many_firings_of_one_rule_in_one_batch(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, _ = receiver
    automation = create_automation(store, EVERY)
    other = create_automation(store, EVERY.replace("every-failure", "every-failure-too"))
    runs = Runs(store, datetime.now(UTC))
    for n in range(25):
        runs.failed_run(n, "etl", f"failure {n}")
    runs.settled()
    with running_engine(store, blocks, Clock(time.time())) as engine:
        pump(engine, store)
        wait_until(lambda: len(outcomes_of(store, automation)) == 25 and len(outcomes_of(store, other)) == 25,
                   what="every failure delivered for both rules")
    texts = sorted(orjson.loads(m.body)["text"] for m in app.at("/slack"))
    assert texts == sorted([f"failure {n}" for n in range(25)] * 2)


def test_one_engine_at_a_time_and_a_takeover(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    from ledgerflow.notifications.dispatch import Dispatcher
    from ledgerflow.notifications.engine import AutomationEngine, EngineStateMoved

    app, _ = receiver
    automation = create_automation(store, EVERY)
    idle = Dispatcher(lambda clients: None, lambda outcomes: None)  # type: ignore[arg-type, return-value]
    first = AutomationEngine(store, blocks.engine, idle, settle=0.0, lease=0.5, start=store.head())
    assert first.hold()
    first.load()
    with running_engine(store, blocks, Clock(time.time())) as second:
        second.lease = 0.5
        assert not second.hold()  # the first one holds the lease
        wait_until(second.hold, what="the takeover once the first stops renewing")
        runs = Runs(store, datetime.now(UTC))
        runs.failed_run(0, "etl", "after the takeover")
        runs.settled()
        pump(second, store)
        wait_until(lambda: len(outcomes_of(store, automation)) == 1, what="the new holder's delivery")
        with pytest.raises(EngineStateMoved):  # the old holder's stale state is refused
            pump(first, store)
    assert [orjson.loads(m.body)["text"] for m in app.at("/slack")] == ["after the takeover"]


AS_OF = """
name: as-of
trigger: {match: {events: ["flow-run.Failed"]}}
actions: [{type: slack, block: ops, text: "{{ flow_run.run_name }} {{ flow_run.state_name }}: {{ event.data.message }}"}]
"""


def test_the_run_in_templates_is_the_same_whether_its_stream_was_kept_or_is_read(
    store: EventStore, blocks: BlockStore, receiver: tuple[HttpReceiver, str],
) -> None:
    app, _ = receiver
    create_automation(store, AS_OF)
    runs = Runs(store, datetime.now(UTC))
    with running_engine(store, blocks, Clock(time.time())) as engine:
        read = runs.created(0, "etl")  # handled before the reload below: its stream is read
        runs.state(read, "Running", 1)
        runs.settled()
        pump(engine, store)
        engine.load()
        runs.state(read, "Failed", 2, "read")
        kept, _ = runs.failed_run(3, "etl", "kept")  # created since the load: its stream is kept
        runs.settled()
        pump(engine, store)
        wait_until(lambda: len(app.at("/slack")) == 2, what="both alerts")
    texts = sorted(orjson.loads(m.body)["text"] for m in app.at("/slack"))
    assert texts == sorted([f"etl-{kept[-6:]} Failed: kept", f"etl-{read[-6:]} Failed: read"])
