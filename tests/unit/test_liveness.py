"""Liveness rules (events/liveness.py): when a run's process counts as dead, what a run's stream
says of it, how the runs projection keeps it, probing real processes for pid reuse, and
automations that do not count heartbeats unless they ask for them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from ledgerflow.events import NewEvent
from ledgerflow.events.liveness import (
    HEARTBEAT,
    STALE_AFTER,
    LiveRun,
    ProcessIdentity,
    live_run,
    process_alive,
    process_fields,
    this_process,
    verdict,
)
from ledgerflow.events.states import StateType
from ledgerflow.notifications.backtest import backtest
from ledgerflow.notifications.model import validate_rule
from ledgerflow.projections.analytics import AnalyticsProjection
from ledgerflow.projections.run_views import fold_runs
from tests.api.conftest import wait_until
from tests.projections.support import T0, as_stored

HERE = ProcessIdentity("here", 100, T0)
WORKER = ProcessIdentity("worker-7", 200, T0)


def run_of(process: ProcessIdentity, state: StateType = StateType.RUNNING, interval: float = 10.0,
           last_heartbeat: datetime = T0) -> LiveRun:
    return LiveRun("r1", state, process, interval, last_heartbeat)


def dead(process: ProcessIdentity) -> bool:
    return False


def alive(process: ProcessIdentity) -> bool:
    return True


def test_a_run_on_this_host_is_dead_once_its_process_is_gone() -> None:
    local = ProcessIdentity("here", 200, T0)
    assert verdict(run_of(local), T0, HERE, alive) is None
    found = verdict(run_of(local), T0, HERE, dead)
    assert found is not None and found.state_name == "Crashed"
    assert "pid 200 on here" in found.message
    # Its heartbeats do not matter on its own host: the process does.
    assert verdict(run_of(local), T0 + timedelta(hours=1), HERE, alive) is None


def test_a_process_never_judges_its_own_runs() -> None:
    assert verdict(run_of(HERE), T0 + timedelta(hours=1), HERE, dead) is None


def test_a_run_on_another_host_is_dead_once_its_heartbeats_are_overdue() -> None:
    run = run_of(WORKER, interval=10)
    on_time = T0 + timedelta(seconds=STALE_AFTER * 10)
    assert verdict(run, on_time, HERE, dead) is None  # its pid means nothing here
    found = verdict(run, on_time + timedelta(milliseconds=1), HERE, alive)
    assert found is not None and found.state_name == "Crashed" and "no heartbeat from worker-7" in found.message


def test_silence_while_nobody_could_hear_the_heartbeats_is_not_held_against_a_run() -> None:
    run = run_of(WORKER, interval=10)  # last heard at T0
    back, allowance = T0 + timedelta(minutes=5), timedelta(seconds=10)  # the server was down until then
    judged_from = back + allowance + timedelta(seconds=STALE_AFTER * 10)
    assert verdict(run, judged_from, HERE, alive, listening_since=back, reconnect_allowance=allowance) is None
    found = verdict(run, judged_from + timedelta(seconds=1), HERE, alive, listening_since=back,
                    reconnect_allowance=allowance)
    assert found is not None and found.state_name == "Crashed"
    # A run heard from since the server came back is held to the usual bound.
    heard_since = run_of(WORKER, interval=10, last_heartbeat=back + timedelta(seconds=1))
    found = verdict(heard_since, back + timedelta(seconds=1 + STALE_AFTER * 10 + 1), HERE, alive,
                    listening_since=back, reconnect_allowance=allowance)
    assert found is not None and found.state_name == "Crashed"


def test_a_dead_cancelling_run_ends_cancelled() -> None:
    found = verdict(run_of(ProcessIdentity("here", 200, T0), StateType.CANCELLING), T0, HERE, dead)
    assert found is not None and found.state_name == "Cancelled"


def running(run_id: str, process: ProcessIdentity, interval: float, name: str = "Running") -> dict[str, Any]:
    return {"flow_run_id": run_id, "state_type": "RUNNING", "state_name": name, **process_fields(process, interval)}


def stream(*events: tuple[str, dict[str, Any], int]) -> list[NewEvent]:
    return [NewEvent(type=type_, data=data, occurred=T0 + timedelta(seconds=at)) for type_, data, at in events]


def test_a_streams_liveness_is_its_last_recorded_process_and_last_heartbeat() -> None:
    events = stream(
        ("flow-run.created", {"flow_run_id": "r1", "flow_name": "f", "run_name": "f-1"}, 0),
        ("flow-run.Running", running("r1", WORKER, 5), 1),
        (HEARTBEAT, {"flow_run_id": "r1"}, 6),
        ("flow-run.AwaitingRetry", {"flow_run_id": "r1", "state_type": "SCHEDULED", "state_name": "AwaitingRetry"}, 7),
        ("flow-run.Retrying", running("r1", ProcessIdentity("worker-7", 300, T0), 2, "Retrying"), 8),
        (HEARTBEAT, {"flow_run_id": "r1"}, 10),
        ("flow-run.Cancelling", {"flow_run_id": "r1", "state_type": "CANCELLING", "state_name": "Cancelling"}, 11),
    )
    found = live_run("r1", as_stored(events))
    assert found == LiveRun("r1", StateType.CANCELLING, ProcessIdentity("worker-7", 300, T0), 2.0,
                            T0 + timedelta(seconds=10))
    ended = events + stream(("flow-run.Cancelled", {"flow_run_id": "r1", "state_type": "CANCELLED",
                                                    "state_name": "Cancelled"}, 12))
    assert live_run("r1", as_stored(ended)) is None
    # A run whose Running event records no process (written before heartbeats existed) is not judged.
    legacy = stream(("flow-run.Running", {"flow_run_id": "r2", "state_type": "RUNNING", "state_name": "Running"}, 0))
    assert live_run("r2", as_stored(legacy)) is None


def test_the_runs_projection_keeps_the_process_and_last_heartbeat_and_analytics_ignores_heartbeats() -> None:
    events = as_stored(stream(
        ("flow-run.created", {"flow_run_id": "r1", "flow_name": "f", "run_name": "f-1"}, 0),
        ("flow-run.Running", running("r1", WORKER, 5), 1),
        (HEARTBEAT, {"flow_run_id": "r1"}, 6),
        (HEARTBEAT, {"flow_run_id": "unknown"}, 7),
    ))
    rows = fold_runs({}, events)["flow_runs"]
    assert set(rows) == {"r1"}  # a heartbeat alone makes no run
    row = rows["r1"]
    assert (row["host"], row["pid"], row["process_started"], row["heartbeat_seconds"]) == ("worker-7", 200, T0, 5.0)
    assert row["last_heartbeat"] == T0 + timedelta(seconds=6)
    assert row["state_name"] == "Running" and row["updated"] == T0 + timedelta(seconds=1)
    assert AnalyticsProjection().keys(events[2:], {}) == {"tracked": set(), "buckets": set()}


def test_probing_a_process_tells_a_reused_pid_and_a_zombie_from_a_live_process() -> None:
    me = this_process()
    assert me.pid == os.getpid() and process_alive(me)
    assert not process_alive(me._replace(started=me.started - timedelta(seconds=30)))  # the pid was reused
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        probe = ProcessIdentity(me.host, child.pid, this_process_of(child.pid).started)
        assert process_alive(probe)
        child.send_signal(signal.SIGKILL)
        wait_for_zombie(child.pid)
        assert not process_alive(probe)  # killed, not yet reaped
    finally:
        child.kill()
        child.wait()
    assert not process_alive(probe)  # gone


def this_process_of(pid: int) -> ProcessIdentity:
    return ProcessIdentity("", pid, datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC))


def wait_for_zombie(pid: int) -> None:
    def zombie() -> bool:
        try:
            return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            pytest.fail("the child was reaped early")

    wait_until(zombie)


@pytest.mark.parametrize(("patterns", "fired_on"), [
    (["flow-run.*"], ["flow-run.created", "flow-run.Running"]),
    (["*"], ["flow-run.created", "flow-run.Running"]),
    ([HEARTBEAT], [HEARTBEAT, HEARTBEAT]),
])
def test_automations_count_heartbeats_only_when_they_name_them(patterns: list[str], fired_on: list[str]) -> None:
    events = as_stored(stream(
        ("flow-run.created", {"flow_run_id": "r1", "flow_name": "f", "run_name": "f-1"}, 0),
        ("flow-run.Running", running("r1", WORKER, 5), 1),
        (HEARTBEAT, {"flow_run_id": "r1"}, 6),
        (HEARTBEAT, {"flow_run_id": "r1"}, 11),
    ))
    rule = validate_rule({"name": "every-event", "trigger": {"match": {"events": patterns}},
                          "actions": [{"type": "slack", "block": "ops", "text": "{{ event.type }}"}]})
    firings = backtest(rule, events, lambda run_id: events, until=T0 + timedelta(hours=1))
    assert [firing.triggering_event["type"] for firing in firings] == fired_on
