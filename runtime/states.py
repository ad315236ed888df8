"""The State objects users see: what a run is or ended as, with its value or error (Prefect's).

A state has a type (what the engine reasons about) and a name (what people read): `Cached` is
a COMPLETED state, `NotReady` a PENDING one, and a flow may return `Completed(name="Skipped")`.
`state.result()` gives the run's value or raises its error; called from async code it returns
an awaitable instead, so Prefect's `await state.result()` works (`aresult()` always does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from ledgerflow.events.model import utcnow
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.runtime.signals import CancelledRun, CrashedRun, FailedRun, PausedRun, UnfinishedRun

__all__ = [
    "AwaitingRetry",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "Suspended",
    "is_state_iterable",
    "log_name",
]

_UNSET: Any = object()
_DEFAULT_NAMES = {
    StateType.SCHEDULED: "Scheduled", StateType.PENDING: "Pending", StateType.RUNNING: "Running",
    StateType.COMPLETED: "Completed", StateType.FAILED: "Failed", StateType.CANCELLED: "Cancelled",
    StateType.CRASHED: "Crashed", StateType.PAUSED: "Paused", StateType.CANCELLING: "Cancelling",
}


@dataclass(frozen=True)
class StateDetails:
    """Which run a state belongs to, and what else it says (Prefect's `state_details`)."""

    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None
    child_flow_run_id: UUID | None = None
    scheduled_time: datetime | None = None
    cache_key: str | None = None
    pause_timeout: datetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None


class State:
    """A run's state. `State(type, name, message, data=...)` builds one by hand."""

    __slots__ = ("type", "name", "message", "timestamp", "state_details", "_value", "exception")

    def __init__(
        self,
        type: StateType | str,
        name: str | None = None,
        message: str | None = None,
        *,
        data: Any = _UNSET,
        timestamp: datetime | None = None,
        state_details: StateDetails | None = None,
        flow_run_id: UUID | None = None,
        task_run_id: UUID | None = None,
        value: Any = _UNSET,
        exception: BaseException | None = None,
    ) -> None:
        # The engine builds a state per task run: a StateType given is not looked up again
        # (an Enum call costs ~3 us), and details are built once rather than `replace`d (~10 us).
        kind = type if isinstance(type, StateType) else StateType(type.upper() if isinstance(type, str) else type)
        self.type = kind
        self.name = name or _DEFAULT_NAMES[kind]
        self.message = message
        self.timestamp = timestamp or utcnow()
        if state_details is None:
            details = StateDetails(flow_run_id, task_run_id)
        elif flow_run_id is not None or task_run_id is not None:
            details = replace(state_details, flow_run_id=flow_run_id or state_details.flow_run_id,
                              task_run_id=task_run_id or state_details.task_run_id)
        else:
            details = state_details
        self.state_details = details
        if isinstance(data, BaseException) and exception is None:
            exception, data = data, _UNSET
        self._value = value if value is not _UNSET else data
        self.exception = exception

    # -- what Prefect code reads ----------------------------------------------------------

    @property
    def data(self) -> Any:
        """The run's value, or for a failed run its exception (None when there is neither)."""
        if self.exception is not None:
            return self.exception
        return None if self._value is _UNSET else self._value

    @property
    def flow_run_id(self) -> UUID | None:
        return self.state_details.flow_run_id

    @property
    def task_run_id(self) -> UUID | None:
        return self.state_details.task_run_id

    def result(self, raise_on_failure: bool = True, fetch: bool = True) -> Any:
        """The run's value; for a failed run raise its error (or return it). From async code,
        an awaitable of it (`await state.result()`)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.resolve(raise_on_failure)
        return self.aresult(raise_on_failure)

    async def aresult(self, raise_on_failure: bool = True) -> Any:
        return self.resolve(raise_on_failure)

    def resolve(self, raise_on_failure: bool = True) -> Any:
        """`result()` for any caller, sync or async: the value, or the error raised."""
        if self.type == StateType.PAUSED:
            raise PausedRun(self.message or "the run is paused; its result is not available")
        if self.type not in TERMINAL:
            raise UnfinishedRun(self.message or f"the run is {self.name}; its result is not available")
        if self.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            error = self._error()
            if raise_on_failure:
                raise error
            return error
        return self.data

    def _error(self) -> BaseException:
        if self.exception is not None:
            return self.exception
        inner = self._value
        if isinstance(inner, State) and inner.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            return inner._error()
        if is_state_iterable(inner):
            failed: list[State] = [s for s in inner if s.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)]
            if failed:
                return failed[0]._error()
        wrapper = {StateType.CRASHED: CrashedRun, StateType.CANCELLED: CancelledRun}.get(self.type, FailedRun)
        return wrapper(self.message or f"the run is {self.name}")

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

    def is_cancelling(self) -> bool:
        return self.type == StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type == StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL

    @property
    def manual(self) -> bool:
        """Built by hand in flow code (no run of its own), as a flow's return value may be."""
        return self.state_details.flow_run_id is None and self.state_details.task_run_id is None

    def copy(self, **changes: Any) -> State:
        values = {"type": self.type, "name": self.name, "message": self.message, "timestamp": self.timestamp,
                  "state_details": self.state_details, "value": self._value, "exception": self.exception}
        values.update(changes)
        return State(**values)

    def __repr__(self) -> str:
        shown = f", result={self._value!r}" if self._value is not _UNSET and self.type == StateType.COMPLETED else ""
        return f"{self.name}(message={self.message!r}, type={self.type.value}{shown})"


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set made only of States (Prefect's rule)."""
    return isinstance(value, (list, tuple, set)) and bool(value) and all(isinstance(v, State) for v in value)


def _factory(kind: StateType, default_name: str) -> Callable[..., State]:
    def make(message: str | None = None, value: Any = _UNSET, *, name: str | None = None, data: Any = _UNSET,
             state_details: StateDetails | None = None, exception: BaseException | None = None) -> State:
        return State(kind, name or default_name, message, data=data, value=value, state_details=state_details,
                     exception=exception)

    make.__name__ = default_name
    make.__doc__ = f"A {kind.value} state (named {default_name!r} unless `name=` says otherwise)."
    return make


Completed = _factory(StateType.COMPLETED, "Completed")
Failed = _factory(StateType.FAILED, "Failed")
Crashed = _factory(StateType.CRASHED, "Crashed")
Cancelled = _factory(StateType.CANCELLED, "Cancelled")
Cancelling = _factory(StateType.CANCELLING, "Cancelling")
Pending = _factory(StateType.PENDING, "Pending")
Running = _factory(StateType.RUNNING, "Running")
Retrying = _factory(StateType.RUNNING, "Retrying")
Paused = _factory(StateType.PAUSED, "Paused")
Suspended = _factory(StateType.PAUSED, "Suspended")


def Scheduled(message: str | None = None, *, scheduled_time: datetime | None = None, name: str = "Scheduled") -> State:
    return State(StateType.SCHEDULED, name, message, state_details=StateDetails(scheduled_time=scheduled_time or utcnow()))


def AwaitingRetry(message: str | None = None, *, scheduled_time: datetime | None = None) -> State:
    return Scheduled(message, scheduled_time=scheduled_time, name="AwaitingRetry")


def Late(message: str | None = None, *, scheduled_time: datetime | None = None) -> State:
    return Scheduled(message, scheduled_time=scheduled_time, name="Late")


def log_name(state: State) -> str:
    """The state name its event is written under: its own when the log knows it as a name of
    its type, else its type's (a custom `Skipped` is logged as Completed, named in the data)."""
    known = STATE_NAMES.get(state.name)
    return state.name if known == state.type else _DEFAULT_NAMES[state.type]
