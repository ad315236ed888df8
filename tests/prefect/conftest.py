"""Prefect compatibility tests: Prefect-style snippets run against a harness on each database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.runtime.testing import harness


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


def run_events(store: EventStore, flow_run_id: object, kind: str = "") -> list[StoredEvent]:
    return [e for e in store.read_stream(f"flow-run-{flow_run_id}") if e.type.startswith(kind)]


def types_of(store: EventStore, flow_run_id: object, kind: str = "") -> list[str]:
    return [e.type for e in run_events(store, flow_run_id, kind)]


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait on a condition (never on time): poll `check` until it holds or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        threading.Event().wait(0.02)
