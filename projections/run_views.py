"""The runs projection: one row per flow run and per task run with its current state.

Folds `flow-run.created`, `task-run.created` and every `flow-run.<State>` / `task-run.<State>`
(see events/payloads.py). A state event may come before its run's `created` event (a run
requested with `flow-run.Scheduled`), so either one starts the row.

A flow run's row also keeps what its liveness is judged by (events/liveness.py): the process
its `Running` event recorded and the time of its last heartbeat, so finding the runs to check
is one indexed query (`queries.live_flow_runs`), not a read of the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

from ledgerflow.events import StoredEvent
from ledgerflow.events.liveness import HEARTBEAT, recorded_process
from ledgerflow.events.payloads import creates_task_run
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.events.tables import UtcDateTime
from ledgerflow.projections.base import Row, Rows

__all__ = ["RunsProjection", "error_text", "fold_runs"]

_STATES = {
    name: (state_type.value, state_type is StateType.RUNNING, state_type in TERMINAL)
    for name, state_type in STATE_NAMES.items()
}
"""A state's name: its type's value, whether it is Running, whether it is terminal."""


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def error_text(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if error:
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return None


def _new_flow_run(run_id: str, occurred: datetime) -> Row:
    return {
        "key": run_id, "flow_name": None, "run_name": None, "state_type": None,
        "state_name": None, "created": occurred, "start": None, "end": None, "duration": None,
        "attempts": 0, "parameters": "{}", "tags": "[]", "parent_flow_run_id": None,
        "parent_task_run_id": None, "root_flow_run_id": None, "deployment_id": None,
        "replay_of": None, "entrypoint": None, "error": None, "updated": occurred,
        "scheduled_time": None, "work_pool": None, "host": None, "pid": None,
        "process_started": None, "heartbeat_seconds": None, "last_heartbeat": None,
    }


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _new_task_run(run_id: str, flow_run_id: str, occurred: datetime) -> Row:
    return {
        "key": run_id, "flow_run_id": flow_run_id, "task_key": None, "task_name": None,
        "run_name": None, "occurrence": None, "state_type": None, "state_name": None,
        "created": occurred, "start": None, "end": None, "duration": None, "attempts": 0,
        "parameters": "{}", "tags": "[]", "upstream": "[]", "cached_from": None,
        "child_flow_run_id": None, "error": None, "updated": occurred,
    }


def _apply_state(row: Row, name: str, data: dict[str, Any], occurred: datetime) -> None:
    state_type, running, terminal = _STATES[name]
    row["state_type"] = state_type
    # A custom name (a flow that returned Completed(name="Skipped")) rides in the data.
    shown = data.get("state_name")
    row["state_name"] = shown if isinstance(shown, str) and shown and len(shown) <= 40 else name
    row["updated"] = occurred
    attempt = data.get("attempt", 1)
    if attempt > row["attempts"]:
        row["attempts"] = attempt
    if running and row["start"] is None:
        row["start"] = occurred
    if terminal:
        row["end"] = occurred
        start = row["start"]
        row["duration"] = (occurred - start).total_seconds() if start is not None else None
    else:
        row["end"] = None
        row["duration"] = None
    error = error_text(data)
    if error is not None:
        row["error"] = error


def _record_process(row: Row, data: dict[str, Any], occurred: datetime) -> None:
    recorded = recorded_process(data) if row["state_type"] == StateType.RUNNING.value else None
    if recorded is not None:
        process, interval = recorded
        row.update(host=process.host, pid=process.pid, process_started=process.started,
                   heartbeat_seconds=interval, last_heartbeat=occurred)


def fold_runs(rows: Rows, events: Sequence[StoredEvent]) -> Rows:
    """Pure: the flow run and task run rows `events` change, given the stored `rows`."""
    flows_in, tasks_in = rows.get("flow_runs", {}), rows.get("task_runs", {})
    flows: dict[str, Row] = {}
    tasks: dict[str, Row] = {}

    def flow(run_id: str, occurred: datetime) -> Row:
        row = flows.get(run_id)
        if row is None:
            stored = flows_in.get(run_id)
            row = flows[run_id] = dict(stored) if stored else _new_flow_run(run_id, occurred)
        return row

    def task(run_id: str, flow_run_id: str, occurred: datetime) -> Row:
        row = tasks.get(run_id)
        if row is None:
            stored = tasks_in.get(run_id)
            row = tasks[run_id] = (
                dict(stored) if stored else _new_task_run(run_id, flow_run_id, occurred)
            )
        return row

    for event in events:
        kind, _, name = event.type.partition(".")
        data = event.data
        if event.type == HEARTBEAT:
            run_id = data["flow_run_id"]
            if run_id in flows or run_id in flows_in:
                flow(run_id, event.occurred)["last_heartbeat"] = event.occurred
            continue
        if name != "created" and name not in STATE_NAMES:
            continue
        if kind == "flow-run":
            row = flow(data["flow_run_id"], event.occurred)
            if name == "created":
                row["created"] = event.occurred
                row["flow_name"] = data["flow_name"]
                row["run_name"] = data["run_name"]
                row["parameters"] = _dumps(data.get("parameters", {}))
                row["tags"] = _dumps(data.get("tags", []))
                for field in ("parent_flow_run_id", "parent_task_run_id", "root_flow_run_id",
                              "deployment_id", "replay_of", "entrypoint", "work_pool"):
                    row[field] = data.get(field)
            elif name in STATE_NAMES:
                _apply_state(row, name, data, event.occurred)
                _record_process(row, data, event.occurred)
                # When a waiting run is due: its Scheduled / Late / AwaitingRetry time.
                row["scheduled_time"] = _time(data.get("scheduled_time")) if _STATES[name][0] == "SCHEDULED" else None
                for field in ("entrypoint", "replay_of", "work_pool"):
                    if data.get(field) and not row[field]:
                        row[field] = data[field]
                if data.get("parameters") is not None and row["parameters"] == "{}":
                    row["parameters"] = _dumps(data["parameters"])
        elif kind == "task-run":
            row = task(data["task_run_id"], data["flow_run_id"], event.occurred)
            if creates_task_run(event.type, data):
                row["created"] = event.occurred
                for field in ("task_key", "task_name", "run_name", "occurrence", "child_flow_run_id"):
                    row[field] = data.get(field)
                row["parameters"] = _dumps(data.get("parameters", {}))
                row["tags"] = _dumps(data.get("tags", []))
                row["upstream"] = _dumps(data.get("upstream", []))
            if name in STATE_NAMES:
                _apply_state(row, name, data, event.occurred)
                if data.get("cached_from"):
                    row["cached_from"] = data["cached_from"]
    return {"flow_runs": flows, "task_runs": tasks}


class RunsProjection:
    name = "runs"
    version = 4
    types = ("flow-run.*", "task-run.*")
    table_names = ("flow_runs", "task_runs")

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        flow_runs = Table(
            f"{prefix}flow_runs", metadata,
            Column("key", String(64), primary_key=True),
            Column("flow_name", String(200)),
            Column("run_name", String(200)),
            Column("state_type", String(20)),
            Column("state_name", String(40)),
            Column("created", UtcDateTime(), nullable=False),
            Column("start", UtcDateTime()),
            Column("end", UtcDateTime()),
            Column("duration", Float()),
            Column("attempts", Integer(), nullable=False),
            Column("parameters", Text(), nullable=False),
            Column("tags", Text(), nullable=False),
            Column("parent_flow_run_id", String(64)),
            Column("parent_task_run_id", String(64)),
            Column("root_flow_run_id", String(64)),
            Column("deployment_id", String(64)),
            Column("replay_of", String(64)),
            Column("entrypoint", Text()),
            Column("error", Text()),
            Column("updated", UtcDateTime(), nullable=False),
            Column("scheduled_time", UtcDateTime()),
            Column("work_pool", String(200)),
            Column("host", String(255)),
            Column("pid", Integer()),
            Column("process_started", UtcDateTime()),
            Column("heartbeat_seconds", Float()),
            Column("last_heartbeat", UtcDateTime()),
        )
        Index(f"{prefix}flow_runs_created", flow_runs.c.created, flow_runs.c.key)
        Index(f"{prefix}flow_runs_due", flow_runs.c.state_type, flow_runs.c.scheduled_time)
        Index(f"{prefix}flow_runs_flow", flow_runs.c.flow_name, flow_runs.c.created)
        Index(f"{prefix}flow_runs_state", flow_runs.c.state_type, flow_runs.c.created)
        Index(f"{prefix}flow_runs_deployment", flow_runs.c.deployment_id, flow_runs.c.created)
        task_runs = Table(
            f"{prefix}task_runs", metadata,
            Column("key", String(64), primary_key=True),
            Column("flow_run_id", String(64), nullable=False),
            Column("task_key", String(400)),
            Column("task_name", String(200)),
            Column("run_name", String(200)),
            Column("occurrence", Integer()),
            Column("state_type", String(20)),
            Column("state_name", String(40)),
            Column("created", UtcDateTime(), nullable=False),
            Column("start", UtcDateTime()),
            Column("end", UtcDateTime()),
            Column("duration", Float()),
            Column("attempts", Integer(), nullable=False),
            Column("parameters", Text(), nullable=False),
            Column("tags", Text(), nullable=False),
            Column("upstream", Text(), nullable=False),
            Column("cached_from", String(64)),
            Column("child_flow_run_id", String(64)),
            Column("error", Text()),
            Column("updated", UtcDateTime(), nullable=False),
        )
        Index(f"{prefix}task_runs_flow_run", task_runs.c.flow_run_id, task_runs.c.created)
        return {"flow_runs": flow_runs, "task_runs": task_runs}

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        flows: set[str | None] = set()
        tasks: set[str | None] = set()
        for event in events:
            if event.type.startswith("flow-run."):
                flows.add(event.data.get("flow_run_id"))
            elif event.type.startswith("task-run."):
                tasks.add(event.data.get("task_run_id"))
        flows.discard(None)
        tasks.discard(None)
        return {"flow_runs": flows, "task_runs": tasks}  # type: ignore[dict-item]

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        return fold_runs(rows, events)
