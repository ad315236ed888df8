"""The run state vocabulary (Prefect's, so a migrating user's filters map one to one).

A state has a type (what the engine reasons about) and a name (what people read): `Cached` is
a `COMPLETED` state, `TimedOut` a `FAILED` one, `AwaitingRetry` a `SCHEDULED` one. A state
change of a flow run is stored as the event `flow-run.<name>`, of a task run as
`task-run.<name>` (`task-run.Failed`, `flow-run.Completed`, `task-run.Cached`).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "STATE_NAMES",
    "TERMINAL",
    "StateType",
    "state_event_type",
    "state_from_event_type",
]


class StateType(StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


TERMINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})

STATE_NAMES: dict[str, StateType] = {
    "Scheduled": StateType.SCHEDULED,
    "Late": StateType.SCHEDULED,
    "AwaitingRetry": StateType.SCHEDULED,
    "Resuming": StateType.SCHEDULED,
    "Pending": StateType.PENDING,
    "NotReady": StateType.PENDING,
    "Running": StateType.RUNNING,
    "Retrying": StateType.RUNNING,
    "Completed": StateType.COMPLETED,
    "Cached": StateType.COMPLETED,
    "Reused": StateType.COMPLETED,
    "RolledBack": StateType.COMPLETED,
    "Failed": StateType.FAILED,
    "TimedOut": StateType.FAILED,
    "Crashed": StateType.CRASHED,
    "Cancelling": StateType.CANCELLING,
    "Cancelled": StateType.CANCELLED,
    "Paused": StateType.PAUSED,
    "Suspended": StateType.PAUSED,
}
"""Every state name the runtime writes, with its type. `Reused` marks a task result taken
from the original run during a replay; `NotReady` a task run that did not start because an
upstream run did not complete; `RolledBack` a completed task run whose transaction rolled back;
`Resuming` a suspended flow run that was resumed and waits to be executed again."""


def state_event_type(kind: str, name: str) -> str:
    """`state_event_type("task-run", "Failed") == "task-run.Failed"`."""
    if name not in STATE_NAMES:
        raise ValueError(f"unknown state name {name!r}")
    return f"{kind}.{name}"


def state_from_event_type(event_type: str) -> tuple[str, str, StateType] | None:
    """`("flow-run", "Completed", COMPLETED)` for a state event type, else None."""
    kind, _, name = event_type.partition(".")
    if kind in ("flow-run", "task-run") and name in STATE_NAMES:
        return kind, name, STATE_NAMES[name]
    return None
