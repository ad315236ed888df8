"""A malformed runtime event in the log is skipped by the projections, never fatal to them."""

from __future__ import annotations

import pytest

from ledgerflow.events import EventStore, NewEvent
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from tests.projections.support import wait_visible


def test_a_malformed_event_does_not_stop_the_projections(store: EventStore, caplog: pytest.LogCaptureFixture) -> None:
    store.append("flow-run-bad", [NewEvent(type="task-run.Running", data={"flow_run_id": "bad"})])
    good = store.append(
        "flow-run-good",
        [NewEvent(type="flow-run.created", data={"flow_run_id": "good", "flow_name": "etl", "run_name": "good"})],
    )
    wait_visible(store, good)
    page = queries.list_flow_runs(ReadModel(store), limit=10)
    assert [run.id for run in page.items] == ["good"]
    assert "skipping malformed task-run.Running" in caplog.text
