"""Prefect-style snippets run against a throwaway store of each kind, as a migrating user runs them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.runtime.testing import harness


@pytest.fixture
def log(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


@pytest.fixture
def runs(log: EventStore) -> EventStore:
    """The same harness under the name the pause, transaction, ... tests use."""
    return log


def events_of(store: EventStore, flow_run_id: object, prefix: str = "") -> list[StoredEvent]:
    return [e for e in store.read_stream(f"flow-run-{flow_run_id}") if e.type.startswith(prefix)]


def run_events(store: EventStore, flow_run_id: object, kind: str = "") -> list[StoredEvent]:
    return events_of(store, flow_run_id, kind)


def types_of(store: EventStore, flow_run_id: object, kind: str = "") -> list[str]:
    return [e.type for e in events_of(store, flow_run_id, kind)]


def task_states(store: EventStore, flow_run_id: object) -> dict[str, str]:
    """task run name -> the name of its last state, from the log."""
    names: dict[str, str] = {}
    last: dict[str, str] = {}
    for event in events_of(store, flow_run_id, "task-run."):
        if event.type == "task-run.created":
            names[event.data["task_run_id"]] = event.data["run_name"]
        else:
            last[event.data["task_run_id"]] = event.data.get("state_name") or event.type.partition(".")[2]
    return {names[k]: v for k, v in last.items()}


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait on a condition (never on time): poll `check` until it holds or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        threading.Event().wait(0.02)
