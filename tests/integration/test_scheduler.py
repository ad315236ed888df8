"""The scheduler on each database, with a clock driven by hand: one run per slot however many
schedulers, restarts and redeploys; a changed, paused or deleted schedule replaces its future runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ledgerflow.events import EventStore
from ledgerflow.events.deployments import (
    apply_deployment,
    delete_deployment,
    pause_deployment,
    read_deployment,
    resume_deployment,
    spec_from,
)
from ledgerflow.events.runs import read_flow_run
from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings
from tests.api.conftest import wait_until

START = datetime(2024, 1, 1, tzinfo=UTC)
SETTINGS = SchedulerSettings(horizon=timedelta(seconds=10), min_runs=3, max_runs=100)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def spec(**changes: Any) -> Any:
    values: dict[str, Any] = {
        "flow_name": "etl", "name": "fast", "entrypoint": "flows/etl.py:etl",
        "schedules": [{"kind": "interval", "interval": 1}], **changes,
    }
    return spec_from(values)


def runs_by_slot(store: EventStore) -> dict[str, list[str]]:
    """Scheduled time -> ids of the runs requested for it, and their states."""
    found: dict[str, list[str]] = {}
    for event in store.read_all(limit=100_000, types=["flow-run.Scheduled"]):
        found.setdefault(str(event.data["scheduled_time"]), []).append(str(event.data["flow_run_id"]))
    return found


def states(store: EventStore, ids: list[str]) -> Counter[str]:
    return Counter((s.name if (s := read_flow_run(store, run_id).state) else "-") for run_id in ids)


def live_ids(store: EventStore) -> list[str]:
    ids = [run for runs in runs_by_slot(store).values() for run in runs]
    return [run for run in ids if (s := read_flow_run(store, run).state) is not None and s.name == "Scheduled"]


def settle(scheduler: Scheduler, check: Callable[[], bool]) -> None:
    """Tick until `check` holds: on PostgreSQL a reader sees new events only once the
    cluster's older transactions have ended (events/postgres.py), so a tick may not see them yet."""
    def ticked() -> bool:
        scheduler.tick()
        return check()

    wait_until(ticked)


def test_two_schedulers_and_a_restart_request_each_slot_once(store: EventStore, store_factory: Callable[[], EventStore]) -> None:
    clock = Clock()
    apply_deployment(store, spec())
    first = Scheduler(store, SETTINGS, store=store, clock=clock)
    other = store_factory()
    second = Scheduler(other, SETTINGS, store=other, clock=clock)
    wait_until(lambda: bool(first.index.refresh()) or bool(first.index.deployments))
    wait_until(lambda: bool(second.index.refresh()) or bool(second.index.deployments))
    for _ in range(30):
        first.tick()
        second.tick()
        clock.now += timedelta(milliseconds=700)
    restarted = Scheduler(other, SETTINGS, store=other, clock=clock)
    restarted.tick()
    apply_deployment(store, spec())  # an unchanged redeploy writes nothing
    first.tick()
    last = clock.now + SETTINGS.horizon
    wait_until(lambda: max(datetime.fromisoformat(t) for t in runs_by_slot(store)) >= last - timedelta(seconds=1))
    by_slot = runs_by_slot(store)
    assert all(len(ids) == 1 for ids in by_slot.values()), by_slot
    times = sorted(datetime.fromisoformat(t) for t in by_slot)
    assert times[0] == START + timedelta(seconds=1)
    assert times == [START + timedelta(seconds=n) for n in range(1, len(times) + 1)]  # no slot missing
    assert times[-1] >= clock.now + SETTINGS.horizon - timedelta(seconds=1)


def test_a_changed_schedule_cancels_its_future_runs_and_materialises_the_new_ones(store: EventStore) -> None:
    clock = Clock()
    apply_deployment(store, spec())
    scheduler = Scheduler(store, SETTINGS, store=store, clock=clock)
    settle(scheduler, lambda: len(live_ids(store)) == 10)
    old = live_ids(store)
    clock.now += timedelta(seconds=2.5)  # two slots are now in the past: they stay as they are
    apply_deployment(store, spec(schedules=[{"kind": "interval", "interval": 2, "parameters": {}}]))
    settle(scheduler, lambda: len(live_ids(store)) == 7)
    assert states(store, old) == Counter({"Cancelled": 8, "Scheduled": 2})
    waiting = live_ids(store)
    new = [run for run in waiting if run not in old]
    times = sorted(datetime.fromisoformat(str(read_flow_run(store, run).state.scheduled_time)) for run in new)  # type: ignore[union-attr]
    assert times == [START + timedelta(seconds=s) for s in (4, 6, 8, 10, 12)]


def test_pause_resume_and_delete(store: EventStore) -> None:
    clock = Clock()
    apply_deployment(store, spec())
    scheduler = Scheduler(store, SETTINGS, store=store, clock=clock)
    settle(scheduler, lambda: len(live_ids(store)) == 10)
    pause_deployment(store, "etl/fast")
    settle(scheduler, lambda: live_ids(store) == [])
    clock.now += timedelta(seconds=1)
    resume_deployment(store, "etl/fast")
    # New ids: the cancelled runs stay cancelled, and the slots get runs again.
    settle(scheduler, lambda: len(live_ids(store)) == 10)
    delete_deployment(store, "etl/fast")
    settle(scheduler, lambda: live_ids(store) == [])
    deployment = read_deployment(store, "etl/fast")
    assert deployment is not None and deployment.deleted


def test_a_change_made_while_no_scheduler_ran_is_handled_when_one_starts(store: EventStore) -> None:
    clock = Clock()
    apply_deployment(store, spec())
    settle(Scheduler(store, SETTINGS, store=store, clock=clock), lambda: len(live_ids(store)) == 10)
    pause_deployment(store, "etl/fast")
    # A new scheduler of the same consumer name goes on from the checkpoint: it sees the pause.
    settle(Scheduler(store, SETTINGS, store=store, clock=clock), lambda: live_ids(store) == [])


def test_runs_requested_from_a_stale_deployment_version_are_cancelled_by_their_scheduler(store: EventStore) -> None:
    clock = Clock()
    apply_deployment(store, spec())
    stale = Scheduler(store, SETTINGS, clock=clock)  # no durable consumer: only its own read-back
    wait_until(lambda: bool(stale.index.refresh()) or bool(stale.index.deployments))
    pause_deployment(store, "etl/fast")
    stale.index.refresh = lambda: []  # type: ignore[method-assign] # it has not seen the pause yet
    stale.tick()
    assert stale.cancelled == 10
    wait_until(lambda: len(runs_by_slot(store)) == 10)
    assert live_ids(store) == []


def test_schedule_parameters_go_over_the_deployments(store: EventStore) -> None:
    clock = Clock()
    apply_deployment(store, spec(parameters={"n": 1, "label": "a"},
                                 schedules=[{"kind": "interval", "interval": 5, "parameters": {"n": 2}}]))
    settle(Scheduler(store, SETTINGS, store=store, clock=clock), lambda: len(live_ids(store)) == 3)
    run = read_flow_run(store, live_ids(store)[0])
    assert run.created["parameters"] == {"n": 2, "label": "a"}
    assert run.created["deployment_name"] == "etl/fast" and run.created["work_pool"] == "default"
