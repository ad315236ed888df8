"""Runtime tests run flows in-process against a harness on each database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.runtime.testing import harness


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


def types_of(store: EventStore, flow_run_id: object, kind: str = "") -> list[str]:
    return [e.type for e in run_events(store, flow_run_id) if e.type.startswith(kind)]


def run_events(store: EventStore, flow_run_id: object) -> list[StoredEvent]:
    return store.read_stream(f"flow-run-{flow_run_id}")
