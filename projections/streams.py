"""What is read straight from a run's own stream rather than from tables: the states it went
through, its logs and artifacts, and its state as of a point of the log (time travel).

A flow run's stream is already the index of everything about it, so these need no tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.states import state_from_event_type
from ledgerflow.projections.errors import RunNotFound
from ledgerflow.projections.models import Artifact, FlowRun, LogLine, StateRecord, TaskRun
from ledgerflow.projections.run_views import error_text, fold_runs

__all__ = [
    "artifacts",
    "flow_run_model",
    "fold_as_of",
    "log_lines",
    "state_history",
    "stream_events",
    "task_run_model",
]

_CHUNK = 1000


def stream_events(store: EventStore, flow_run_id: str, after: int = 0) -> Iterator[StoredEvent]:
    """The run's events after stream position `after`; RunNotFound when it has none at all."""
    stream = flow_run_stream(flow_run_id)
    position = after
    first = True
    while True:
        chunk = store.read_stream(stream, from_version=position + 1, limit=_CHUNK)
        if first and not chunk and (after == 0 or not store.read_stream(stream, limit=1)):
            raise RunNotFound(flow_run_id)
        first = False
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        position = chunk[-1].stream_position


def _json(value: str) -> Any:
    return orjson.loads(value)


def flow_run_model(row: Mapping[Any, Any]) -> FlowRun:
    return FlowRun(
        id=row["key"], parameters=_json(row["parameters"]), tags=_json(row["tags"]),
        **{k: row[k] for k in (
            "flow_name", "run_name", "state_type", "state_name", "created", "start", "end",
            "duration", "attempts", "parent_flow_run_id", "parent_task_run_id", "deployment_id",
            "replay_of", "entrypoint", "error", "scheduled_time", "work_pool",
        )},
    )


def task_run_model(row: Mapping[Any, Any]) -> TaskRun:
    return TaskRun(
        id=row["key"], parameters=_json(row["parameters"]), tags=_json(row["tags"]),
        upstream=_json(row["upstream"]),
        **{k: row[k] for k in (
            "flow_run_id", "task_key", "task_name", "run_name", "occurrence", "state_type",
            "state_name", "created", "start", "end", "duration", "attempts", "cached_from",
            "child_flow_run_id", "error",
        )},
    )


def state_history(events: list[StoredEvent]) -> list[StateRecord]:
    states = []
    for event in events:
        parsed = state_from_event_type(event.type)
        if parsed is None:
            continue
        _, name, state_type = parsed
        data = event.data
        states.append(StateRecord(
            task_run_id=data.get("task_run_id"), state_type=state_type, state_name=name,
            occurred=event.occurred, attempt=data.get("attempt", 1), message=data.get("message"),
            error=error_text(data), traceback=(data.get("error") or {}).get("traceback"),
        ))
    return states


def log_lines(
    store: EventStore, flow_run_id: str, *, min_level: int, task_run_id: str | None,
    after: int, limit: int,
) -> tuple[list[LogLine], int]:
    """Up to `limit` matching lines after stream position `after`, and the position read up to."""
    lines: list[LogLine] = []
    position = after
    for event in stream_events(store, flow_run_id, after):
        if len(lines) >= limit:
            break
        position = event.stream_position
        if event.type != "log.emitted":
            continue
        data = event.data
        if data.get("level", 0) < min_level:
            continue
        if task_run_id is not None and data.get("task_run_id") != task_run_id:
            continue
        lines.append(LogLine(
            position=event.stream_position, occurred=event.occurred,
            task_run_id=data.get("task_run_id"), task_run_name=data.get("task_run_name"), level=data.get("level", 0),
            level_name=data.get("level_name", ""), logger=data.get("logger", ""),
            message=data.get("message", ""),
        ))
    return lines, position


def artifacts(events: list[StoredEvent]) -> list[Artifact]:
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.data
        if event.type == "artifact.created":
            found[data["artifact_id"]] = {
                "id": data["artifact_id"], "key": data.get("key"),
                "artifact_type": data["artifact_type"], "description": data.get("description"),
                "data": data.get("data"), "task_run_id": data.get("task_run_id"),
                "created": event.occurred, "updated": event.occurred,
            }
        elif event.type == "artifact.updated" and data.get("artifact_id") in found:
            artifact = found[data["artifact_id"]]
            if "data" in data:
                artifact["data"] = data["data"]
            if data.get("description") is not None:
                artifact["description"] = data["description"]
            artifact["updated"] = event.occurred
    return [Artifact(**artifact) for artifact in found.values()]


def fold_as_of(
    events: list[StoredEvent], cursor: Cursor | None, at: datetime | None
) -> tuple[int, FlowRun | None, list[TaskRun]]:
    """Fold the run's events up to `cursor` (inclusive) or `at` (occurred at or before)."""
    if cursor is not None:
        upto = [e for e in events if Cursor.parse(e.cursor) <= cursor]
    else:
        upto = [e for e in events if at is not None and e.occurred <= at]
    rows = fold_runs({}, upto)
    flows = [flow_run_model(row) for row in rows["flow_runs"].values()]
    tasks = sorted((task_run_model(r) for r in rows["task_runs"].values()), key=lambda t: t.created)
    return len(upto), (flows[0] if flows else None), tasks
