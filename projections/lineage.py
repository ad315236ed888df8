"""The lineage projection: which runs fed, called, replayed or reused which.

Edges (source -> target): `upstream` a task run whose result flowed into the target task
run's inputs; `subflow` a flow run that called the target flow run, and the parent's stand-in
task run that ran it (see runtime/flows.py); `replay` a flow run the
target replays; `cached` a task run whose stored result the target (Cached or Reused) took.
Nodes carry a name so a graph can be drawn without the runs projection.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Column, Index, MetaData, String, Table

from ledgerflow.events import StoredEvent
from ledgerflow.events.payloads import creates_task_run
from ledgerflow.projections.base import Row, Rows

__all__ = ["LineageProjection", "fold_lineage"]


def _edge(edges: dict[str, Row], kind: str, source: str, target: str) -> None:
    edges[f"{kind}|{source}|{target}"] = {
        "key": f"{kind}|{source}|{target}", "source": source, "target": target, "kind": kind,
    }


def fold_lineage(rows: Rows, events: Sequence[StoredEvent]) -> Rows:
    """Pure: the nodes and edges `events` add (lineage only ever grows)."""
    nodes: dict[str, Row] = {}
    edges: dict[str, Row] = {}
    for event in events:
        data = event.data
        if event.type == "flow-run.created":
            run_id = data["flow_run_id"]
            nodes[run_id] = {
                "key": run_id, "kind": "flow_run", "flow_run_id": None,
                "name": f"{data['flow_name']}/{data['run_name']}",
            }
            for parent in ("parent_flow_run_id", "parent_task_run_id"):
                if data.get(parent):
                    _edge(edges, "subflow", data[parent], run_id)
            if data.get("replay_of"):
                _edge(edges, "replay", data["replay_of"], run_id)
        elif event.type.startswith("task-run."):
            if creates_task_run(event.type, data):
                run_id = data["task_run_id"]
                nodes[run_id] = {
                    "key": run_id, "kind": "task_run", "flow_run_id": data["flow_run_id"],
                    "name": data.get("run_name") or data.get("task_name"),
                }
                for upstream in data.get("upstream", ()):
                    _edge(edges, "upstream", upstream, run_id)
            if data.get("cached_from"):
                _edge(edges, "cached", data["cached_from"], data["task_run_id"])
        elif event.type.startswith("flow-run.") and data.get("replay_of"):
            _edge(edges, "replay", data["replay_of"], data["flow_run_id"])
    return {"nodes": nodes, "edges": edges}


class LineageProjection:
    name = "lineage"
    version = 2
    types = ("flow-run.*", "task-run.*")
    table_names = ("nodes", "edges")

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        nodes = Table(
            f"{prefix}nodes", metadata,
            Column("key", String(64), primary_key=True),
            Column("kind", String(10), nullable=False),
            Column("name", String(400)),
            Column("flow_run_id", String(64)),
        )
        Index(f"{prefix}nodes_flow_run", nodes.c.flow_run_id)
        edges = Table(
            f"{prefix}edges", metadata,
            Column("key", String(160), primary_key=True),
            Column("source", String(64), nullable=False),
            Column("target", String(64), nullable=False),
            Column("kind", String(10), nullable=False),
        )
        Index(f"{prefix}edges_source", edges.c.source)
        Index(f"{prefix}edges_target", edges.c.target)
        return {"nodes": nodes, "edges": edges}

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        return {}

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        return fold_lineage(rows, events)
