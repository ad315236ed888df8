"""Prefect's `emit_event` (docs: "Custom events"): a user's own event, in the log, in the feeds
and in `ledgerflow events tail`, linked to the run that emitted it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from typer.testing import CliRunner

from ledgerflow import emit_event, flow, task
from ledgerflow.api.cli.main import app as cli
from ledgerflow.api.http.app import create_app
from ledgerflow.events import EventStore
from ledgerflow.runtime.custom_events import InvalidCustomEvent
from tests.api.conftest import api_settings, local_client, settings_for


@task
def ship(order_id: str) -> str:
    emit_event(
        event="order.shipped",
        resource={"prefect.resource.id": f"acme.order.{order_id}", "acme.region": "eu"},
        payload={"carrier": "ducks"},
    )
    return order_id


@flow
def fulfil(order_id: str) -> str:
    emit_event(event="order.packed", resource={"ledgerflow.resource.id": f"acme.order.{order_id}"})
    shipped: str = ship(order_id)
    return shipped


def test_an_event_outside_a_run_goes_to_its_resource_stream(runs: EventStore) -> None:
    when = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    event_id = uuid4()
    emitted = emit_event(
        event="model.trained",
        resource={"ledgerflow.resource.id": "ml.model.churn", "ledgerflow.resource.name": "churn"},
        related=[{"ledgerflow.resource.id": "ml.dataset.2026", "ledgerflow.resource.role": "dataset"}],
        payload={"auc": 0.91},
        occurred=when,
        id=event_id,
    )
    assert emitted.event == "model.trained" and emitted.id == event_id and emitted.stream == "resource-ml.model.churn"
    stored = runs.read_stream("resource-ml.model.churn")
    assert [(e.type, e.id, e.occurred) for e in stored] == [("model.trained", event_id, when)]
    assert stored[0].data == {
        "resource": {"ledgerflow.resource.id": "ml.model.churn", "ledgerflow.resource.name": "churn"},
        "related": [{"ledgerflow.resource.id": "ml.dataset.2026", "ledgerflow.resource.role": "dataset"}],
        "payload": {"auc": 0.91},
    }
    emit_event(event="model.trained", resource={"ledgerflow.resource.id": "ml.model.churn"}, id=event_id)
    assert len(runs.read_stream("resource-ml.model.churn")) == 1  # the id is the idempotency key


def test_an_event_inside_a_run_is_linked_to_it(runs: EventStore) -> None:
    state = fulfil("42", return_state=True)
    assert state.result() == "42"
    run_id = str(state.flow_run_id)
    packed, shipped = runs.read_stream("resource-acme.order.42")
    assert (packed.type, shipped.type) == ("order.packed", "order.shipped")
    assert packed.data["flow_run_id"] == run_id and "task_run_id" not in packed.data
    assert shipped.data["flow_run_id"] == run_id and shipped.data["task_run_id"]
    assert shipped.data["resource"]["acme.region"] == "eu" and shipped.data["payload"] == {"carrier": "ducks"}
    roles = {r["ledgerflow.resource.role"]: r["ledgerflow.resource.id"] for r in shipped.data["related"]}
    assert roles["flow-run"] == f"ledgerflow.flow-run.{run_id}"
    assert roles["task-run"] == f"ledgerflow.task-run.{shipped.data['task_run_id']}"
    assert roles["flow"] == "ledgerflow.flow.fulfil"
    assert str(shipped.meta.correlation_id) == run_id


def test_custom_events_are_in_the_feeds_and_events_tail(runs: EventStore, store_url: str, tmp_path: Path) -> None:
    state = fulfil("7", return_state=True)
    with local_client(create_app(settings_for(tmp_path, store_url), api_settings(run_projections=False))) as client:
        page = client.get("/api/events", params={"type": "order.*"}).json()
        assert [e["type"] for e in page["events"]] == ["order.packed", "order.shipped"]
        assert {e["data"]["flow_run_id"] for e in page["events"]} == {str(state.flow_run_id)}
    tail = CliRunner().invoke(cli, ["events", "tail", "--type", "order.*", "--json"],
                              env={"LEDGERFLOW_DATABASE_URL": store_url, "LEDGERFLOW_HOME": str(tmp_path)})
    assert tail.exit_code == 0, tail.output
    shown = [orjson.loads(line) for line in tail.output.splitlines() if line.startswith("{")]
    assert [e["type"] for e in shown] == ["order.packed", "order.shipped"]


@pytest.mark.parametrize(
    ("name", "resource", "message"),
    [
        ("flow-run.Completed", {"ledgerflow.resource.id": "x"}, "reserved"),
        ("prefect.flow-run.Completed", {"ledgerflow.resource.id": "x"}, "reserved"),
        ("order shipped", {"ledgerflow.resource.id": "x"}, "must be 1-200"),
        ("order.shipped", {"acme.region": "eu"}, "must name the resource's id"),
        ("order.shipped", {"ledgerflow.resource.id": 3}, "must be strings"),
    ],
)
def test_malformed_events_are_refused(name: str, resource: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidCustomEvent, match=message):
        emit_event(event=name, resource=resource)  # type: ignore[arg-type]


def test_related_resources_need_a_role() -> None:
    with pytest.raises(InvalidCustomEvent, match="must have a role"):
        emit_event(event="a.b", resource={"ledgerflow.resource.id": "x"}, related=[{"ledgerflow.resource.id": "y"}])
