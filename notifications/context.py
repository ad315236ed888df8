"""What templates see: `event`, `flow_run` and `automation`, built from the log alone.

`event` has the shape `GET /api/events` returns; `flow_run` the shape of the run in
`GET /api/flow-runs/{id}` (its fields, plus `task_runs` and `states`), folded here from the
run's stream as of the triggering event, since notifications may not import projections.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.payloads import creates_task_run
from ledgerflow.events.states import TERMINAL, StateType, state_from_event_type
from ledgerflow.notifications.model import Automation

__all__ = ["automation_context", "event_context", "flow_run_view", "run_as_of", "template_context"]


def event_context(event: StoredEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "stream": event.stream,
        "occurred": event.occurred.isoformat(),
        "data": event.data,
        "meta": event.meta.as_json(),
        "position": event.position,
        "stream_position": event.stream_position,
        "recorded": event.recorded.isoformat(),
        "hash": event.hash,
        "cursor": event.cursor,
    }


def automation_context(automation: Automation) -> dict[str, Any]:
    return {
        "id": str(automation.id),
        "name": automation.name,
        "description": automation.description,
        "enabled": automation.enabled,
    }


def _error(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class _Run:
    """A flow run or task run being folded."""

    def __init__(self, run_id: str, created: datetime) -> None:
        self.fields: dict[str, Any] = {"id": run_id}
        self.created = created
        self.start: datetime | None = None
        self.end: datetime | None = None
        self.attempts = 0
        self.state_type: str | None = None
        self.state_name: str | None = None
        self.error: str | None = None

    def apply(self, name: str, state_type: StateType, data: dict[str, Any], at: datetime) -> None:
        self.state_type, self.state_name = state_type.value, name
        self.attempts = max(self.attempts, int(data.get("attempt", 1)))
        if state_type is StateType.RUNNING and self.start is None:
            self.start = at
        self.end = at if state_type in TERMINAL else None
        self.error = _error(data) or self.error

    def view(self) -> dict[str, Any]:
        duration = (self.end - self.start).total_seconds() if self.end and self.start else None
        return {
            **self.fields,
            "state_type": self.state_type,
            "state_name": self.state_name,
            "created": _iso(self.created),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "duration": duration,
            "attempts": self.attempts,
            "error": self.error,
        }


_FLOW_FIELDS = ("flow_name", "run_name", "parent_flow_run_id", "parent_task_run_id", "deployment_id",
                "replay_of", "entrypoint", "work_pool")
_TASK_FIELDS = ("task_key", "task_name", "run_name", "occurrence", "child_flow_run_id")


def flow_run_view(flow_run_id: str, events: Sequence[StoredEvent]) -> dict[str, Any] | None:
    """The run folded from its stream's `events`; None if they hold nothing of it."""
    if not events:
        return None
    flow = _Run(flow_run_id, events[0].occurred)
    flow.fields.update({name: None for name in _FLOW_FIELDS})
    flow.fields.update(parameters={}, tags=[])
    tasks: dict[str, _Run] = {}
    states: list[dict[str, Any]] = []
    for event in events:
        data = event.data
        parsed = state_from_event_type(event.type)
        if event.type == "flow-run.created":
            flow.created = event.occurred
            flow.fields.update({name: data.get(name) for name in _FLOW_FIELDS})
            flow.fields.update(parameters=data.get("parameters", {}), tags=data.get("tags", []))
        elif creates_task_run(event.type, data) and data.get("task_run_id"):
            task = tasks.setdefault(data["task_run_id"], _Run(data["task_run_id"], event.occurred))
            task.fields.update({name: data.get(name) for name in _TASK_FIELDS})
            task.fields.update(flow_run_id=flow_run_id, parameters=data.get("parameters", {}),
                               tags=data.get("tags", []), upstream=data.get("upstream", []))
        if parsed is not None:  # (a reused task run's one event is its creation and its state)
            kind, name, state_type = parsed
            if kind == "flow-run":
                flow.apply(name, state_type, data, event.occurred)
                for field in ("entrypoint", "replay_of"):
                    if data.get(field) and not flow.fields.get(field):
                        flow.fields[field] = data[field]
            elif data.get("task_run_id"):
                task = tasks.setdefault(data["task_run_id"], _Run(data["task_run_id"], event.occurred))
                task.apply(name, state_type, data, event.occurred)
            states.append({
                "task_run_id": data.get("task_run_id"), "state_type": state_type.value, "state_name": name,
                "occurred": event.occurred.isoformat(), "attempt": data.get("attempt", 1),
                "message": data.get("message"), "error": _error(data),
            })
    view = flow.view()
    view["task_runs"] = [task.view() for task in tasks.values()]
    view["states"] = states
    return view


def template_context(
    event: StoredEvent, flow_run: dict[str, Any] | None, automation: Automation
) -> dict[str, Any]:
    return {"event": event_context(event), "flow_run": flow_run, "automation": automation_context(automation)}


def run_as_of(flow_run_id: str, run_events: Sequence[StoredEvent], event: StoredEvent) -> dict[str, Any] | None:
    """The run as it stood when `event` was appended: its stream up to that event."""
    if not run_events:
        return None
    if event.stream == run_events[0].stream:
        upto = [e for e in run_events if e.stream_position <= event.stream_position]
    else:
        cursor = Cursor.parse(event.cursor)
        upto = [e for e in run_events if Cursor.parse(e.cursor) <= cursor]
    return flow_run_view(flow_run_id, upto)
