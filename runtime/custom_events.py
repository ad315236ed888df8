"""`emit_event`: a user's own event (`order.shipped`) in the log, beside the runs' events.

As in Prefect, an event names the resource it is about with a dict of string labels, which
must hold the resource's id (`ledgerflow.resource.id`; Prefect's `prefect.resource.id` is
accepted too), and optionally related resources (each also with a
`ledgerflow.resource.role`), a JSON payload, when it occurred, its id (the idempotency key)
and the id of the event it follows.

The event's type is the given name, so automations match it by type pattern (`order.*`). It
is appended to the stream `resource-<resource id>`, never to a product stream; its `data` is
`{"resource": {...}, "related": [...], "payload": {...}}`. Emitted inside a run, it is
linked to it: the flow run (and task run) are added to `related` and their ids to `data`
(`flow_run_id`, `task_run_id`), so the run's filters (flow name, tags) apply to it; it is
committed with the run's events. Outside a run it is committed before `emit_event` returns.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events import EventMeta, NewEvent
from ledgerflow.events.model import EVENT_TYPE, new_id, utcnow
from ledgerflow.events.reserved import PRODUCT_TYPE_PREFIXES
from ledgerflow.runtime import config
from ledgerflow.runtime.context import FlowRunContext, flow_run_var, task_run_var

__all__ = ["RESERVED_PREFIXES", "Event", "InvalidCustomEvent", "emit_event", "resource_stream"]

RESOURCE_ID = "ledgerflow.resource.id"
RESOURCE_ROLE = "ledgerflow.resource.role"
RESOURCE_NAME = "ledgerflow.resource.name"
_ID_LABELS = (RESOURCE_ID, "prefect.resource.id")
_ROLE_LABELS = (RESOURCE_ROLE, "prefect.resource.role")
RESERVED_PREFIXES = (*PRODUCT_TYPE_PREFIXES, "prefect.", "prefect-cloud.")
"""Event types the product writes (or Prefect reserves): a custom event may not take them."""
_STREAM_ID = re.compile(r"[A-Za-z0-9._:@/+-]{1,180}")
_MAX_LABELS = 500
_MAX_RELATED = 100


class InvalidCustomEvent(ValueError):
    """The event cannot be emitted as given (name, resource, related or payload)."""


class Event(BaseModel):
    """An emitted event, in Prefect's shape (plus the stream it was appended to)."""

    model_config = ConfigDict(frozen=True)

    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred: datetime
    id: UUID
    follows: UUID | None = None
    stream: str


def resource_stream(resource_id: str) -> str:
    """The stream of a resource's custom events."""
    if _STREAM_ID.fullmatch(resource_id):
        return f"resource-{resource_id}"
    return f"resource-sha256-{hashlib.sha256(resource_id.encode()).hexdigest()}"


def _labels(labels: Mapping[str, Any], what: str) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise InvalidCustomEvent(f"{what} must be a dict of string labels, not {type(labels).__name__}")
    if len(labels) > _MAX_LABELS:
        raise InvalidCustomEvent(f"{what} has {len(labels)} labels; at most {_MAX_LABELS}")
    bad = [key for key, value in labels.items() if not isinstance(key, str) or not isinstance(value, str)]
    if bad:
        raise InvalidCustomEvent(f"{what}: labels and their values must be strings ({bad[0]!r} is not)")
    if not any(labels.get(key) for key in _ID_LABELS):
        raise InvalidCustomEvent(f"{what} must name the resource's id: {{{RESOURCE_ID!r}: '...'}}")
    return dict(labels)


def _resource_id(labels: Mapping[str, str]) -> str:
    return next(labels[key] for key in _ID_LABELS if labels.get(key))


def _run_related(context: FlowRunContext | Any) -> list[dict[str, str]]:
    """The current flow run (and task run) as related resources."""
    found = [{
        RESOURCE_ID: f"ledgerflow.flow-run.{context.flow_run.id}", RESOURCE_ROLE: "flow-run",
        RESOURCE_NAME: context.flow_run.name,
    }]
    flow_ = getattr(context, "flow", None)
    if flow_ is not None:
        found.append({RESOURCE_ID: f"ledgerflow.flow.{flow_.name}", RESOURCE_ROLE: "flow", RESOURCE_NAME: flow_.name})
    task_run = task_run_var.get()
    if task_run is not None:
        found.append({
            RESOURCE_ID: f"ledgerflow.task-run.{task_run.task_run.id}", RESOURCE_ROLE: "task-run",
            RESOURCE_NAME: task_run.task_run.name,
        })
    return found


def emit_event(
    event: str,
    resource: Mapping[str, str],
    occurred: datetime | None = None,
    related: Iterable[Mapping[str, str]] | None = None,
    payload: Mapping[str, Any] | None = None,
    id: UUID | None = None,
    follows: UUID | None = None,
) -> Event:
    """Append the custom event `event` about `resource` to the log; the Event emitted.

    Raises InvalidCustomEvent for a reserved or malformed name, a resource without an id,
    related resources without id and role, or a payload that is not JSON.
    """
    if not isinstance(event, str) or not EVENT_TYPE.fullmatch(event):
        raise InvalidCustomEvent(
            f"event name {event!r} must be 1-200 letters, digits, '.', '-' or '_' and start with a letter or digit"
        )
    if event.startswith(RESERVED_PREFIXES):
        raise InvalidCustomEvent(f"event name {event!r} is reserved: names starting with {event.split('.')[0]}. are the product's")
    labels = _labels(resource, "resource")
    related_labels = [_labels(item, f"related[{i}]") for i, item in enumerate(related or ())]
    for i, item in enumerate(related_labels):
        if not any(item.get(key) for key in _ROLE_LABELS):
            raise InvalidCustomEvent(f"related[{i}] must have a role: {{{RESOURCE_ROLE!r}: '...'}}")
    context = flow_run_var.get()
    data: dict[str, Any] = {"resource": labels}
    if context is not None:
        known = {_resource_id(item) for item in related_labels}
        related_labels += [item for item in _run_related(context) if item[RESOURCE_ID] not in known]
        data["flow_run_id"] = str(context.flow_run.id)
        task_run = task_run_var.get()
        if task_run is not None:
            data["task_run_id"] = str(task_run.task_run.id)
    if len(related_labels) > _MAX_RELATED:
        raise InvalidCustomEvent(f"at most {_MAX_RELATED} related resources, not {len(related_labels)}")
    data["related"] = related_labels
    data["payload"] = dict(payload or {})
    try:
        orjson.dumps(data)
    except TypeError as exc:
        raise InvalidCustomEvent(f"the payload must be JSON: {exc}") from None
    if occurred is not None and occurred.tzinfo is None:
        raise InvalidCustomEvent("occurred must be timezone-aware")
    when = occurred or utcnow()
    event_id = id or new_id()
    correlation = getattr(context, "meta", EventMeta()).correlation_id if context is not None else None
    meta = EventMeta(correlation_id=correlation, causation_id=follows, actor="emit_event")
    stream = resource_stream(_resource_id(labels))
    new = NewEvent(type=event, data=data, id=event_id, meta=meta, occurred=when)
    _append(context, stream, new)
    return Event(event=event, resource=labels, related=related_labels, payload=data["payload"], occurred=when,
                 id=event_id, follows=follows, stream=stream)


def _append(context: Any, stream: str, new: NewEvent) -> None:
    if context is None:
        runtime = config.current()
        runtime.writer.emit(stream, new)
        runtime.writer.flush()
        return
    send = getattr(context, "send", None)
    if send is not None:  # in a ProcessPoolTaskRunner worker: the engine appends it
        send(stream, new)
        return
    context.runtime.writer.emit(stream, new)
    context.runtime.writer.nudge()
