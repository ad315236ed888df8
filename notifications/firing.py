"""A firing as events: `automation.triggered`, then one `action.triggered` per action, whose
data holds the rendered message (what will be sent; never a secret: templates cannot see
blocks). Their ids derive from the cause, so recording a firing twice records it once, and
the `action.triggered` id is the delivery's idempotency key. Outcomes are `action.succeeded`
or `action.failed`, one per action (same derived id for both: the first one recorded stands).

All of it lives in the automation's stream `automation-<id>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import ANY, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.notifications.errors import TemplateRenderError
from ledgerflow.notifications.model import (
    Action,
    Automation,
    CancelFlowRunAction,
    EmailAction,
    ReplayFlowRunAction,
    RunDeploymentAction,
    SlackAction,
    WebhookAction,
)
from ledgerflow.notifications.templates import render, render_tree
from ledgerflow.notifications.triggers import Fired

__all__ = [
    "RenderedAction",
    "action_id",
    "automation_stream",
    "firing_events",
    "outcome_appends",
    "outcome_event",
    "outcome_id",
    "render_action",
    "render_actions",
]


def automation_stream(automation_id: UUID | str) -> str:
    return f"automation-{automation_id}"


def action_id(firing: UUID, index: int) -> UUID:
    return derived_id("action.triggered", firing, index)


def outcome_id(action: UUID) -> UUID:
    return derived_id("action.outcome", action)


RenderedAction = dict[str, Any]


def render_action(action: Action, context: dict[str, Any], flow_run_id: str | None) -> RenderedAction:
    """The message an action sends (or what it acts on); TemplateRenderError if a template fails."""
    if isinstance(action, SlackAction):
        message: RenderedAction = {"text": render(action.text, context)}
        if action.blocks is not None:
            message["blocks"] = render_tree(action.blocks, context)
        return message
    if isinstance(action, EmailAction):
        return {
            "to": action.to, "cc": action.cc,
            "subject": render(action.subject, context).strip().replace("\n", " "),
            "body": render(action.body, context),
            "html": render(action.html, context, html=True) if action.html is not None else None,
        }
    if isinstance(action, WebhookAction):
        return {
            "body": render(action.body, context),
            "method": action.method,
            "headers": {name: render(value, context) for name, value in action.headers.items()},
        }
    if isinstance(action, ReplayFlowRunAction):
        return {"flow_run_id": flow_run_id, "max_replays": action.max_replays}
    if isinstance(action, CancelFlowRunAction):
        message_text = render(action.message, context) if action.message is not None else None
        return {"flow_run_id": flow_run_id, "message": message_text}
    if isinstance(action, RunDeploymentAction):
        return {"deployment": action.deployment, "parameters": render_tree(action.parameters, context),
                "flow_run_id": flow_run_id}
    raise TypeError(f"unknown action {action!r}")


def render_actions(
    automation: Automation, context: dict[str, Any], flow_run_id: str | None
) -> list[tuple[RenderedAction | None, str | None]]:
    """Each action's (message, None), or (None, error) when its template failed."""
    rendered: list[tuple[RenderedAction | None, str | None]] = []
    for action in automation.actions:
        try:
            rendered.append((render_action(action, context, flow_run_id), None))
        except TemplateRenderError as exc:
            rendered.append((None, str(exc)))
    return rendered


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def firing_events(
    firing: UUID,
    automation: Automation,
    fired: Fired,
    event: StoredEvent,
    flow_run_id: str | None,
    context: dict[str, Any],
) -> list[NewEvent]:
    """`automation.triggered` and one `action.triggered` per action, for one firing."""
    correlation = event.meta.correlation_id
    base = {"automation_id": str(automation.id), "automation_name": automation.name}
    triggered = NewEvent(
        type="automation.triggered",
        id=firing,
        data={
            **base,
            "posture": fired.posture,
            "triggering_event": {
                "id": str(event.id), "type": event.type, "stream": event.stream,
                "stream_position": event.stream_position, "occurred": event.occurred.isoformat(),
            },
            "bucket": fired.bucket,
            "count": fired.count,
            "fired_at": _when(fired.at),
            "flow_run_id": flow_run_id,
        },
        meta=EventMeta(correlation_id=correlation, causation_id=event.id, actor="automation"),
    )
    result = [triggered]
    for index, (action, (message, error)) in enumerate(
        zip(automation.actions, render_actions(automation, context, flow_run_id), strict=True)
    ):
        data: dict[str, Any] = {
            **base,
            "firing_id": str(firing),
            "action_index": index,
            "action_type": action.type,
            "block": getattr(action, "block", None),
            "flow_run_id": flow_run_id,
            "triggering_event_id": str(event.id),
        }
        if error is None:
            data["message"] = message
        else:
            data["render_error"] = error
        result.append(NewEvent(
            type="action.triggered", id=action_id(firing, index), data=data,
            meta=EventMeta(correlation_id=correlation, causation_id=firing, actor="automation"),
        ))
    return result


def outcome_event(
    action: StoredEvent, *, succeeded: bool, attempts: int, detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> NewEvent:
    """`action.succeeded` or `action.failed` for the delivery that `action` (an
    `action.triggered` event) asked for."""
    data: dict[str, Any] = {
        key: action.data.get(key)
        for key in ("automation_id", "automation_name", "firing_id", "action_index", "action_type", "flow_run_id")
    }
    data.update(action_id=str(action.id), attempts=attempts)
    if detail:
        data["detail"] = detail
    if error is not None:
        data["error"] = error[:4000]
    return NewEvent(
        type="action.succeeded" if succeeded else "action.failed",
        id=outcome_id(action.id),
        data=data,
        meta=EventMeta(correlation_id=action.meta.correlation_id, causation_id=action.id, actor="automation"),
    )


def outcome_appends(outcomes: Iterable[tuple[StoredEvent, NewEvent]]) -> list[StreamAppend]:
    """One append per automation stream for (action.triggered, outcome) pairs."""
    by_stream: dict[str, list[NewEvent]] = {}
    for action, outcome in outcomes:
        by_stream.setdefault(action.stream, []).append(outcome)
    return [StreamAppend(stream, events, ANY) for stream, events in by_stream.items()]
