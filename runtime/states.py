"""The State objects users see: what a run ended as, with its value or error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from ledgerflow.events.model import utcnow
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.runtime.signals import CancelledRun

__all__ = [
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "State",
    "StateType",
]

_UNSET = object()


@dataclass(frozen=True, eq=False)
class State:
    type: StateType
    name: str
    message: str | None = None
    timestamp: datetime = field(default_factory=utcnow)
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    value: Any = field(default=_UNSET, repr=False)
    exception: BaseException | None = field(default=None, repr=False)

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's value; for a failed run, raise its error (or return it)."""
        if self.exception is not None:
            if raise_on_failure:
                raise self.exception
            return self.exception
        if self.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            message = self.message or f"the run is {self.name}"
            error: Exception = CancelledRun(message) if self.type == StateType.CANCELLED else RuntimeError(message)
            if raise_on_failure:
                raise error
            return error
        return None if self.value is _UNSET else self.value

    def is_scheduled(self) -> bool:
        return self.type == StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type == StateType.PENDING

    def is_running(self) -> bool:
        return self.type == StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type == StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type == StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type == StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type == StateType.CANCELLED

    def is_paused(self) -> bool:
        return self.type == StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL


def _state(name: str, message: str | None = None, **kwargs: Any) -> State:
    return State(STATE_NAMES[name], name, message, **kwargs)


def Completed(message: str | None = None, value: Any = None) -> State:
    return _state("Completed", message, value=value)


def Failed(message: str | None = None, exception: BaseException | None = None) -> State:
    return _state("Failed", message, exception=exception)


def Crashed(message: str | None = None) -> State:
    return _state("Crashed", message)


def Cancelled(message: str | None = None) -> State:
    return _state("Cancelled", message)
