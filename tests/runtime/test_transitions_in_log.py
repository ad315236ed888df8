"""Every state change the engine writes is one the run state machine accepts."""

from __future__ import annotations

import time
from collections import defaultdict

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.events.transitions import Accepted, RunState, decide, evolve
from ledgerflow.runtime import Abort, flow, task, task_input_hash


@task(retries=2)
def flaky(attempts: list[int]) -> int:
    attempts.append(1)
    if len(attempts) < 2:
        raise ValueError("first attempt fails")
    return len(attempts)


@task(cache_key_fn=task_input_hash)
def cached(x: int) -> int:
    return x


@task(retries=3)
def aborts() -> None:
    raise Abort("no point retrying")


@task(timeout_seconds=0.05, retries=1)
def slow() -> None:
    time.sleep(0.5)


@flow
def child(x: int) -> int:
    value: int = cached(x)
    return value


@flow
def failing() -> None:
    raise ValueError("boom")


@flow
def everything() -> None:
    flaky([])
    cached(1)
    cached(1)
    child(2)
    aborts(return_state=True)
    slow(return_state=True)
    future = cached.submit(3)
    future.wait()


def _run_tree(store: EventStore, flow_run_id: object) -> list[StoredEvent]:
    """A flow run's stream and its subflows' streams (read_stream, which never trails writers)."""
    events = store.read_stream(f"flow-run-{flow_run_id}")
    for event in list(events):
        if event.type == "task-run.created" and event.data.get("child_flow_run_id"):
            events += _run_tree(store, event.data["child_flow_run_id"])
    return events


def _runs(events: list[StoredEvent]) -> dict[str, list[StoredEvent]]:
    """Each run's own events: the flow run's, and each task run's by its id."""
    by_run: dict[str, list[StoredEvent]] = defaultdict(list)
    for event in events:
        if event.type.startswith("task-run."):
            by_run[event.data["task_run_id"]].append(event)
        elif event.type.startswith("flow-run."):
            by_run[event.data["flow_run_id"]].append(event)
    return by_run


def test_the_log_replays_through_the_state_machine(runs: EventStore) -> None:
    failed = failing(return_state=True)
    assert failed.is_failed()
    completed = everything(return_state=True)
    runs_seen = _runs(_run_tree(runs, failed.flow_run_id) + _run_tree(runs, completed.flow_run_id))
    names = {e.type.split(".", 1)[1] for events in runs_seen.values() for e in events}
    assert {"created", "Running", "Completed", "Cached", "AwaitingRetry", "Failed", "TimedOut"} <= names
    for events in runs_seen.values():
        assert events[0].type.endswith(".created")
        state: RunState | None = evolve(None, events[0])
        for event in events[1:]:
            proposed = evolve(state, event)
            assert proposed is not None
            decision = decide(state, proposed, event.occurred)
            assert decision == Accepted(proposed), (state, event.type, decision)
            state = proposed
        assert state is not None and state.type.name in ("COMPLETED", "FAILED"), events[-1].type
