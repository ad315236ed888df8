"""The deployments projection: one row per deployment, its current definition and state.

Folds `deployment.*` with the deployment's own pure fold (`events.deployments.evolve_deployment`):
the row keeps the folded state as JSON next to the columns that queries filter on. A deleted
deployment keeps its row, marked `deleted` (re-creating it brings it back).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

from ledgerflow.events import StoredEvent
from ledgerflow.events.deployments import Deployment, DeploymentSpec, evolve_deployment
from ledgerflow.events.tables import UtcDateTime
from ledgerflow.projections.base import Row, Rows

__all__ = ["DeploymentsProjection", "deployment_of", "fold_deployments"]


def deployment_of(row: Row | Any) -> Deployment:
    """The folded deployment a row stores."""
    state = orjson.loads(row["state"] if isinstance(row, dict) else row.state)
    return Deployment(
        id=state["id"], spec=DeploymentSpec.model_validate(state["spec"]), paused=state["paused"],
        deleted=state["deleted"], version=state["version"], created=datetime.fromisoformat(state["created"]),
        updated=datetime.fromisoformat(state["updated"]), since=state["since"],
    )


def _row(deployment: Deployment) -> Row:
    spec = deployment.spec
    state = {
        "id": deployment.id, "spec": spec.as_data(), "paused": deployment.paused, "deleted": deployment.deleted,
        "version": deployment.version, "created": deployment.created.isoformat(),
        "updated": deployment.updated.isoformat(), "since": dict(deployment.since),
    }
    return {
        "key": deployment.id, "name": spec.full_name, "flow_name": spec.flow_name, "paused": deployment.paused,
        "deleted": deployment.deleted, "work_pool": spec.work_pool, "concurrency_limit": spec.concurrency_limit,
        "tags": orjson.dumps(spec.tags).decode(), "created": deployment.created, "updated": deployment.updated,
        "state": orjson.dumps(state).decode(),
    }


def fold_deployments(rows: Rows, events: Sequence[StoredEvent]) -> Rows:
    """Pure: the deployment rows `events` change, given the stored `rows`."""
    stored = rows.get("deployments", {})
    states: dict[str, Deployment | None] = {}
    for event in events:
        if not event.type.startswith("deployment."):
            continue
        ident = str(event.data.get("deployment_id", ""))
        if ident not in states:
            states[ident] = deployment_of(stored[ident]) if ident in stored else None
        states[ident] = evolve_deployment(states[ident], event)
    return {"deployments": {ident: _row(state) for ident, state in states.items() if state is not None}}


class DeploymentsProjection:
    name = "deployments"
    version = 1
    types = ("deployment.*",)
    table_names = ("deployments",)

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        table = Table(
            f"{prefix}deployments", metadata,
            Column("key", String(64), primary_key=True),
            Column("name", String(420), nullable=False),
            Column("flow_name", String(200), nullable=False),
            Column("paused", Boolean(), nullable=False),
            Column("deleted", Boolean(), nullable=False),
            Column("work_pool", String(200)),
            Column("concurrency_limit", Integer()),
            Column("tags", Text(), nullable=False),
            Column("created", UtcDateTime(), nullable=False),
            Column("updated", UtcDateTime(), nullable=False),
            Column("state", Text(), nullable=False),
        )
        Index(f"{prefix}deployments_name", table.c.name)
        return {"deployments": table}

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        return {"deployments": {str(e.data.get("deployment_id")) for e in events if e.data.get("deployment_id")}}

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        return fold_deployments(rows, events)
