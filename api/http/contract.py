"""Ingest-time checks of runtime events: data of a type `events.payloads` defines must fit it.

Projections fold these payloads; one malformed `task-run.Failed` sent over HTTP must be a 422
for its sender, not a stuck projection for everyone.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from ledgerflow.api.http.errors import validation_message
from ledgerflow.events import InvalidEvent, StreamAppend
from ledgerflow.events.payloads import (
    ArtifactCreated,
    ArtifactUpdated,
    FlowRunCreated,
    LogEmitted,
    StateChanged,
    TaskRunCreated,
)
from ledgerflow.events.states import state_from_event_type

__all__ = ["check_payloads"]

_MODELS: dict[str, type[BaseModel]] = {
    "flow-run.created": FlowRunCreated,
    "task-run.created": TaskRunCreated,
    "log.emitted": LogEmitted,
    "artifact.created": ArtifactCreated,
    "artifact.updated": ArtifactUpdated,
}


def check_payloads(appends: list[StreamAppend]) -> None:
    """Raise InvalidEvent naming the first runtime event whose data does not fit its type."""
    index = 0
    for append in appends:
        for event in append.events:
            state = state_from_event_type(event.type)
            model = _MODELS.get(event.type) or (StateChanged if state else None)
            if model is not None:
                try:
                    parsed = model.model_validate(event.data)
                except ValidationError as exc:
                    raise InvalidEvent(f"event {index} ({event.type}): {validation_message(exc.errors())}") from None
                if state and event.type.startswith("task-run.") and not getattr(parsed, "task_run_id", None):
                    raise InvalidEvent(f"event {index} ({event.type}): task_run_id: Field required")
            index += 1
