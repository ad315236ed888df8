"""The backtest over a seeded history on both databases: it fires exactly at the expected
events, with the messages the actions would have sent, and sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledgerflow.events import EventStore
from ledgerflow.notifications import parse_rule
from ledgerflow.notifications.backtest import backtest_log
from tests.notifications.history import Runs

BASE = datetime(2024, 3, 1, tzinfo=UTC)

REACTIVE = """
name: etl-failures
trigger:
  match: {events: ["flow-run.Failed", "flow-run.Crashed"], flow_name: nightly-etl}
  cooldown: 15
actions:
  - {type: slack, block: ops, text: "{{ flow_run.flow_name }} ({{ flow_run.run_name }}) failed: {{ event.data.message }}"}
  - {type: webhook, block: pager, body: '{"run": "{{ flow_run.id }}", "state": "{{ flow_run.state_name }}"}'}
"""


def test_reactive_backtest_fires_exactly_at_the_expected_events(store: EventStore) -> None:
    runs = Runs(store, BASE)
    first, failed_first = runs.failed_run(0, "nightly-etl", "disk full")
    _, failed_second = runs.failed_run(10, "nightly-etl", "inside the cooldown")
    runs.failed_run(12, "other-flow", "another flow")
    ok = runs.created(14, "nightly-etl")
    runs.state(ok, "Running", 14)
    runs.state(ok, "Completed", 16)
    third, failed_third = runs.failed_run(20, "nightly-etl", "network down")
    fourth = runs.created(40, "nightly-etl")
    crashed = runs.state(fourth, "Crashed", 40, "worker lost")
    spec = parse_rule(REACTIVE)
    runs.settled()
    before = store.head()

    firings = backtest_log(store, spec, until=BASE + timedelta(days=1))

    assert [f.triggering_event["id"] for f in firings] == [str(failed_first.id), str(failed_third.id), str(crashed.id)]
    assert [f.at for f in firings] == [BASE, BASE + timedelta(seconds=20), BASE + timedelta(seconds=40)]
    assert [f.flow_run_id for f in firings] == [first, third, fourth]
    slack = firings[0].actions[0]
    assert slack["type"] == "slack" and slack["block"] == "ops"
    assert slack["message"]["text"] == f"nightly-etl (nightly-etl-{first[-6:]}) failed: disk full"
    assert firings[1].actions[1]["message"]["body"] == f'{{"run": "{third}", "state": "Failed"}}'
    assert store.head() == before  # nothing written, nothing sent

    # From t=5 on, the failure at 10 is the first (no firing before it to cool down from),
    # and the one at 20 falls within its cooldown.
    since = backtest_log(store, spec, since=BASE + timedelta(seconds=5), until=BASE + timedelta(days=1))
    assert [f.triggering_event["id"] for f in since] == [str(failed_second.id), str(crashed.id)]


PROACTIVE = """
name: etl-late
trigger:
  posture: proactive
  after: [flow-run.Running]
  match: {events: [flow-run.Completed, flow-run.Failed], flow_name: nightly-etl}
  within: 10
actions:
  - {type: slack, block: ops, text: "{{ flow_run.run_name }} still {{ flow_run.state_name }} after 10 s"}
"""


def test_proactive_backtest_fires_for_late_runs_only(store: EventStore) -> None:
    runs = Runs(store, BASE)
    on_time = runs.created(0, "nightly-etl")
    runs.state(on_time, "Running", 0)
    runs.state(on_time, "Completed", 8)
    late = runs.created(100, "nightly-etl")
    started = runs.state(late, "Running", 100)
    runs.state(late, "Completed", 130)
    never = runs.created(200, "nightly-etl")
    started_never = runs.state(never, "Running", 200)
    runs.settled()

    firings = backtest_log(store, parse_rule(PROACTIVE), until=BASE + timedelta(seconds=300))

    assert [(f.triggering_event["id"], f.at, f.posture) for f in firings] == [
        (str(started.id), BASE + timedelta(seconds=110), "proactive"),
        (str(started_never.id), BASE + timedelta(seconds=210), "proactive"),
    ]
    assert firings[0].actions[0]["message"]["text"] == f"nightly-etl-{late[-6:]} still Running after 10 s"
    # Up to a time before the last deadline, the last run is not late yet.
    assert len(backtest_log(store, parse_rule(PROACTIVE), until=BASE + timedelta(seconds=205))) == 1
