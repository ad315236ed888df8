"""Cancelling a running flow: it hears of it from the log, starts no more task runs, lets a
running sync call finish, cancels async ones, and ends Cancelled with its hooks run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.events.runs import cancel_flow_run
from ledgerflow.runtime import config
from ledgerflow.runtime.states import State
from ledgerflow.runtime.testing import harness
from tests.api.conftest import wait_until
from tests.runtime import sample_flows
from tests.runtime.conftest import run_events


class Running:
    """A flow called in a background thread; `state` once it returned."""

    def __init__(self, call: Callable[[], State]) -> None:
        self.state: State | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], State]) -> None:
        try:
            self.state = call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finished(self, timeout: float = 60) -> State:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the flow did not stop"
        assert self.error is None, self.error
        assert self.state is not None
        return self.state


def flow_run_ids(store: EventStore) -> list[str]:
    """The ids of the runs created so far, once at least one is in the log."""
    found: list[str] = []

    def some() -> bool:
        found[:] = [e.data["flow_run_id"] for e in store.read_all(types=["flow-run.created"])]
        return bool(found)

    wait_until(some)
    return found


def state_types(events: list[StoredEvent], kind: str) -> list[str]:
    return [e.type for e in events if e.type.startswith(kind + ".") and e.type != kind + ".created"]


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


def test_a_cancelled_sequential_flow_stops_after_its_current_task(runs: EventStore, tmp_path: Path) -> None:
    flow_ = sample_flows.with_cancellation_hook(sample_flows.sequential, str(tmp_path))
    running = Running(lambda: flow_(str(tmp_path), steps=100, seconds=0.1, return_state=True))
    wait_until(lambda: (tmp_path / "step-2").exists())
    (run_id,) = flow_run_ids(runs)
    cancel_flow_run(runs, run_id, message="stop it")

    state = running.finished()
    assert state.is_cancelled() and "stop it" in (state.message or "")
    done = sorted(p.name for p in tmp_path.glob("step-*"))
    assert 3 <= len(done) < 30  # it stopped long before its 100 steps
    assert (tmp_path / "on_cancellation").read_text() == "Cancelled"
    events = run_events(runs, run_id)
    flow_states = state_types(events, "flow-run")
    assert flow_states[-2:] == ["flow-run.Cancelling", "flow-run.Cancelled"]
    # Every task run that started finished its call: none is left Running, none started after.
    task_states: dict[str, str] = {}
    for event in events:
        if event.type.startswith("task-run.") and event.type != "task-run.created":
            task_states[event.data["task_run_id"]] = event.type
    assert set(task_states.values()) == {"task-run.Completed"}
    assert len(task_states) == len(done)


def test_submitted_task_runs_not_yet_started_never_start(runs: EventStore, tmp_path: Path) -> None:
    running = Running(lambda: sample_flows.fan_out(str(tmp_path), count=40, seconds=0.3, return_state=True))
    wait_until(lambda: any(tmp_path.glob("item-*")))
    (run_id,) = flow_run_ids(runs)
    cancel_flow_run(runs, run_id)

    assert running.finished().is_cancelled()
    ran = {p.name for p in tmp_path.glob("item-*")}
    assert len(ran) < 40
    events = run_events(runs, run_id)
    outcome = {e.data["task_run_id"]: e.type for e in events if e.type in ("task-run.Completed", "task-run.Cancelled")}
    created = [e.data["task_run_id"] for e in events if e.type == "task-run.created"]
    assert len(created) == 40 and set(outcome) == set(created)  # every task run ended
    assert list(outcome.values()).count("task-run.Completed") == len(ran)
    assert list(outcome.values()).count("task-run.Cancelled") == 40 - len(ran)
    assert state_types(events, "flow-run")[-1] == "flow-run.Cancelled"


def test_async_task_runs_are_cancelled(runs: EventStore, tmp_path: Path) -> None:
    """Every gathered task run records Cancelled before the flow run ends, although gather
    hands the first CancelledError on before its siblings have recorded theirs."""
    import asyncio

    count = 12
    running = Running(lambda: asyncio.run(
        sample_flows.async_naps(str(tmp_path), seconds=120, count=count, return_state=True)))
    wait_until(lambda: len(list(tmp_path.glob("started-*"))) == count)
    (run_id,) = flow_run_ids(runs)
    cancel_flow_run(runs, run_id)

    assert running.finished().is_cancelled()  # long before the naps' 120 s
    assert not any((tmp_path / name).exists() for name in "abcdefghijkl"[:count])
    events = run_events(runs, run_id)
    assert state_types(events, "task-run").count("task-run.Cancelled") == count
    assert state_types(events, "flow-run")[-1] == "flow-run.Cancelled"


def test_the_writer_hears_of_a_cancel_even_when_nobody_polls(store_url: str, tmp_path: Path) -> None:
    """With the watcher effectively off, the next append meets the cancel (a version
    conflict), reads it, and the engine stops; the refused transitions are not written."""
    home = tmp_path / "home"
    runtime = config.for_home(home, store_url, cancel_check_seconds=3600)
    previous = config.install(runtime)
    try:
        running = Running(lambda: sample_flows.sequential(str(tmp_path), steps=100, seconds=0.05, return_state=True))
        wait_until(lambda: (tmp_path / "step-1").exists())
        assert runtime.store is not None
        (run_id,) = flow_run_ids(runtime.store)
        cancel_flow_run(runtime.store, run_id)
        assert running.finished().is_cancelled()
        events = run_events(runtime.store, run_id)
        flow_states = state_types(events, "flow-run")
        assert flow_states == ["flow-run.Running", "flow-run.Cancelling", "flow-run.Cancelled"]
    finally:
        config.install(previous)
        runtime.close()


def test_cancelling_a_parent_cancels_its_running_subflow(runs: EventStore, tmp_path: Path) -> None:
    from ledgerflow import flow

    @flow
    def parent(folder: str) -> Any:
        return sample_flows.sequential(folder, steps=100, seconds=0.1)

    running = Running(lambda: parent(str(tmp_path), return_state=True))
    wait_until(lambda: (tmp_path / "step-1").exists())
    parent_id = next(e.data["flow_run_id"] for e in runs.read_all(types=["flow-run.created"]) if e.data["flow_name"] == "parent")
    cancel_flow_run(runs, parent_id)

    assert running.finished().is_cancelled()
    created = runs.read_all(types=["flow-run.created"])
    child_id = next(e.data["flow_run_id"] for e in created if e.data["flow_name"] == "sequential")
    assert state_types(run_events(runs, child_id), "flow-run")[-1] == "flow-run.Cancelled"
    parent_events = run_events(runs, parent_id)
    assert state_types(parent_events, "flow-run")[-1] == "flow-run.Cancelled"
    assert state_types(parent_events, "task-run")[-1] == "task-run.Cancelled"  # the subflow's stand-in
