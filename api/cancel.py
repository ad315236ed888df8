"""Cancel a flow run from outside: one append guarded by the stream's version.

A run not yet started becomes `Cancelled`; a running one `Cancelling` (its engine ends it).
The append expects the version the decision was made on, so of two racing cancels exactly
one is written and the other gets ConcurrencyConflict (or, arriving later, the refusal).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerflow.events import EventMeta, EventStore, NewEvent, StoredEvent
from ledgerflow.events.payloads import StateChanged, flow_run_stream
from ledgerflow.events.states import StateType, state_event_type
from ledgerflow.events.transitions import Accepted, Delayed, RunState, decide, fold
from ledgerflow.projections.errors import RunNotFound

__all__ = ["RunStateConflict", "cancel_flow_run"]

_NOT_STARTED = (StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED)


class RunStateConflict(Exception):
    """The run's state does not allow the change (it already finished, or is cancelling)."""


def cancel_flow_run(store: EventStore, flow_run_id: str, message: str | None = None) -> StoredEvent:
    stream = flow_run_stream(flow_run_id)
    history = store.read_stream(stream)
    if not history:
        raise RunNotFound(flow_run_id)
    current = fold(e for e in history if e.type.startswith("flow-run."))
    name = "Cancelled" if current is None or current.type in _NOT_STARTED else "Cancelling"
    proposed = RunState.named(name)
    decision = decide(current, proposed, datetime.now(UTC))
    if isinstance(decision, Delayed):  # waiting for a schedule does not stop a cancel
        decision = Accepted(proposed)
    if not isinstance(decision, Accepted):
        raise RunStateConflict(decision.reason)
    state = StateChanged(
        flow_run_id=flow_run_id,
        state_type=proposed.type,
        state_name=name,
        message=message or "cancelled through the API",
    )
    event = NewEvent(type=state_event_type("flow-run", name), data=state.as_data(), meta=EventMeta(actor="api"))
    return store.append(stream, [event], expected_version=history[-1].stream_position)[0]

