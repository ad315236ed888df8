"""Pause, suspend and resume flow runs, with input from whoever resumes them (Prefect's API).

- `pause_flow_run()` inside a flow writes `flow-run.Paused` and blocks the flow until the run
  is resumed (its stream gets `flow-run.Running` from `resume_flow_run`) or its timeout passes
  (the flow then raises `FlowPauseTimeout` and the run fails, as in Prefect).
- `suspend_flow_run()` writes `flow-run.Suspended` and ends the flow's process. Resuming the
  run makes it `Resuming` (a waiting, requested run); an executor (`ledgerflow flow-run
  execute`, the server's runner) runs the flow again from the start, and each task call that
  completed before the suspension reuses its stored result instead of running
  (runtime/execute.py plans this with the replay machinery).
- Both take `wait_for_input`: a pydantic model (a `RunInput`), or a plain type such as `str`
  (wrapped in a model with one field, `value`). The pause records the model's JSON schema;
  `resume_flow_run(id, run_input={...})` is refused unless the input fits it; the flow gets
  the input validated by the model itself (so a model's own validators raise in the flow, as
  in Prefect) and the input stays in the log on the resuming event.

A pause has a key (by default its count in this execution of the flow: "1", "2", ...). When
the flow runs again after a suspension and reaches a pause whose key was already resumed, it
does not pause again: it returns the input given then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, NoReturn, Self
from uuid import UUID

from pydantic import BaseModel, create_model

from ledgerflow.events import StoredEvent
from ledgerflow.events import runs as run_cases
from ledgerflow.events.model import utcnow
from ledgerflow.events.states import STATE_NAMES
from ledgerflow.events.transitions import Accepted
from ledgerflow.runtime import config
from ledgerflow.runtime.context import FlowRunContext, flow_run_var, task_run_var
from ledgerflow.runtime.dispatch import in_async_context
from ledgerflow.runtime.logging import run_logger
from ledgerflow.runtime.signals import Pause

__all__ = [
    "FlowPauseTimeout",
    "RunInput",
    "Suspend",
    "apause_flow_run",
    "aresume_flow_run",
    "asuspend_flow_run",
    "pause_flow_run",
    "resume_flow_run",
    "suspend_flow_run",
]

_RESUMES = ("flow-run.Running", "flow-run.Resuming")
_PAUSE_AND_RESUME = [*run_cases.PAUSE_TYPES, *_RESUMES]


class RunInput(BaseModel):
    """The input a paused or suspended flow run waits for (subclass it with your fields)."""

    _description: ClassVar[str | None] = None

    @classmethod
    def with_initial_data(cls, description: str | None = None, **defaults: Any) -> type[Self]:
        """This model with `defaults` for its fields, and a Markdown `description` for whoever
        resumes the run (kept with the pause in the log)."""
        fields: dict[str, Any] = {}
        for name, value in defaults.items():
            if name not in cls.model_fields:
                raise ValueError(f"{cls.__name__} has no field {name!r}")
            fields[name] = (cls.model_fields[name].annotation, value)
        model: type[Self] = create_model(cls.__name__, __base__=cls, **fields)
        model._description = description
        return model


class _ValueInput(RunInput):
    """Stands for a plain type (`wait_for_input=str`): one field, `value`."""


class FlowPauseTimeout(Exception):
    """The paused flow run was not resumed within its timeout."""


class Suspend(Pause):
    """Ends the flow's process after `suspend_flow_run()` wrote `Suspended`."""

    state_name = "Suspended"


def _input_model(wait_for_input: Any) -> type[BaseModel] | None:
    if wait_for_input is None:
        return None
    if isinstance(wait_for_input, type) and issubclass(wait_for_input, BaseModel):
        return wait_for_input
    model: type[BaseModel] = create_model("RunInput", __base__=_ValueInput, value=(wait_for_input, ...))
    return model


def _received(model: type[BaseModel] | None, resumed: StoredEvent) -> Any:
    """What the flow gets back from its pause: the input, validated by the model."""
    if model is None:
        return None
    value = model.model_validate(resumed.data.get("run_input") or {})
    return value.value if isinstance(value, _ValueInput) else value  # type: ignore[attr-defined]


def _current(verb: str) -> FlowRunContext:
    if task_run_var.get() is not None:
        raise RuntimeError(f"Cannot {verb} task runs: call {verb}_flow_run() in the flow itself.")
    context = flow_run_var.get()
    if context is None:
        raise RuntimeError(f"Flow runs can only be {verb}ed from within a flow run.")
    return context


def _resume_of(events: Sequence[StoredEvent], key: str) -> StoredEvent | None:
    """The event that resumed the pause `key` of this run, if it was paused and resumed."""
    paused = False
    for event in events:
        if event.type in run_cases.PAUSE_TYPES and event.data.get("pause_key") == key:
            paused = True
        elif paused and event.type in _RESUMES and event.data.get("pause_key") == key:
            return event
    return None


class _Pause:
    """One call of pause_flow_run / suspend_flow_run in a flow run."""

    def __init__(self, wait_for_input: Any, timeout: float | None, key: str | None, suspend: bool) -> None:
        verb = "suspend" if suspend else "pause"
        self.context = _current(verb)
        if suspend and self.context.meta.correlation_id not in (None, self.context.flow_run.id):
            raise RuntimeError("A subflow run cannot be suspended on its own: suspend the flow run that called it.")
        self.context.pauses += 1
        self.key = key or str(self.context.pauses)
        self.model = _input_model(wait_for_input)
        self.timeout = timeout
        self.suspend = suspend
        self.name = "Suspended" if suspend else "Paused"
        self.paused_at: int | None = None

    def history(self) -> list[StoredEvent]:
        runtime = self.context.runtime
        runtime.writer.flush()
        return runtime.log.read_stream(self.context.stream, types=_PAUSE_AND_RESUME)

    def already_resumed(self) -> StoredEvent | None:
        return _resume_of(self.history(), self.key)

    def write(self) -> None:
        """The Paused / Suspended state, committed before the flow waits or ends."""
        context = self.context
        now = utcnow()
        expiration = now + timedelta(seconds=self.timeout) if self.timeout is not None else None
        decision = context.control.propose(self.name, now, None, expiration)
        if not isinstance(decision, Accepted):
            raise RuntimeError(f"Flow run cannot be {self.name.lower()}: {getattr(decision, 'reason', decision)}")
        data: dict[str, Any] = {
            "flow_run_id": context.flow_run_id, "state_type": STATE_NAMES[self.name], "state_name": self.name,
            "pause_key": self.key, "pause_reschedule": self.suspend,
            "message": "suspended until resumed" if self.suspend else "paused until resumed",
        }
        if expiration is not None:
            data["pause_expiration"] = expiration.isoformat()
        if self.model is not None:
            data["run_input_schema"] = self.model.model_json_schema()
            description = getattr(self.model, "_description", None)
            if description:
                data["run_input_description"] = description
        context.control.own(context.emit(f"flow-run.{self.name}", data))
        context.runtime.writer.flush()
        verb = "Suspending flow run, execution will be rescheduled" if self.suspend else "Pausing flow, execution will continue"
        run_logger(context).info("%s when this flow run is resumed.", verb)

    def check(self) -> StoredEvent | None:
        """The resuming event, once the run was resumed; raise if it must stop instead."""
        context = self.context
        context.control.check()
        if self.paused_at is None:
            events = self.history()
            mine = [e for e in events if e.type == f"flow-run.{self.name}" and e.data.get("pause_key") == self.key]
            self.paused_at = mine[-1].stream_position if mine else 0
            found = _resume_of(events, self.key)
        else:
            events = context.runtime.log.read_stream(context.stream, from_version=self.paused_at + 1, types=list(_RESUMES))
            found = next((e for e in events if e.data.get("pause_key") == self.key), None)
        if found is not None:
            context.control.observe([found])
            run_logger(context).info("Resuming flow run execution!")
        return found

    def interval(self, poll_interval: float) -> float:
        return max(0.01, min(poll_interval, self.context.runtime.watcher.interval))

    def expired(self) -> NoReturn:
        raise FlowPauseTimeout("Flow run was paused and never resumed.")

    def suspended(self) -> NoReturn:
        raise Suspend(f"flow run {self.context.flow_run_id} is suspended until it is resumed")


def pause_flow_run(
    wait_for_input: Any = None, timeout: float = 3600, poll_interval: float = 10, key: str | None = None,
) -> Any:
    """Pause the current flow run until it is resumed (`resume_flow_run`, `ledgerflow
    flow-run resume`, the API); return the input it waited for (or None).

    Past `timeout` seconds the flow raises FlowPauseTimeout and the run fails. In async code
    it returns an awaitable (`await pause_flow_run(...)`).
    """
    if in_async_context():
        return apause_flow_run(wait_for_input, timeout, poll_interval, key)
    pause = _Pause(wait_for_input, timeout, key, suspend=False)
    resumed = pause.already_resumed()
    if resumed is not None:
        return _received(pause.model, resumed)
    pause.write()
    deadline = time.monotonic() + timeout
    while True:
        resumed = pause.check()
        if resumed is not None:
            return _received(pause.model, resumed)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        pause.context.control.wait(min(left, pause.interval(poll_interval)))
    resumed = pause.check()  # a resume accepted just before the deadline still counts
    if resumed is not None:
        return _received(pause.model, resumed)
    pause.expired()


async def apause_flow_run(
    wait_for_input: Any = None, timeout: float = 3600, poll_interval: float = 10, key: str | None = None,
) -> Any:
    """`pause_flow_run` for async flows: waits without blocking the event loop."""
    pause = _Pause(wait_for_input, timeout, key, suspend=False)
    resumed = await asyncio.to_thread(pause.already_resumed)
    if resumed is not None:
        return _received(pause.model, resumed)
    await asyncio.to_thread(pause.write)
    deadline = time.monotonic() + timeout
    while True:
        resumed = await asyncio.to_thread(pause.check)
        if resumed is not None:
            return _received(pause.model, resumed)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(left, pause.interval(poll_interval)))
    resumed = await asyncio.to_thread(pause.check)
    if resumed is not None:
        return _received(pause.model, resumed)
    pause.expired()


def suspend_flow_run(
    wait_for_input: Any = None, flow_run_id: UUID | str | None = None, timeout: float | None = 3600,
    key: str | None = None,
) -> Any:
    """Suspend a flow run: inside a flow, its process ends here (`Suspended`); once resumed,
    the run is executed again from the start, reusing the results of the task calls that
    completed, and this call returns the input it waited for.

    With `flow_run_id`, suspend another run that has not started yet. `timeout=None`: the
    run may be resumed at any time. In async code it returns an awaitable.
    """
    if in_async_context():
        return asuspend_flow_run(wait_for_input, flow_run_id, timeout, key)
    if flow_run_id is not None:
        run_cases.suspend_flow_run(config.current().log, flow_run_id, timeout=timeout, key=key, actor="sdk")
        return None
    pause = _Pause(wait_for_input, timeout, key, suspend=True)
    resumed = pause.already_resumed()
    if resumed is not None:
        return _received(pause.model, resumed)
    pause.write()
    pause.suspended()


async def asuspend_flow_run(
    wait_for_input: Any = None, flow_run_id: UUID | str | None = None, timeout: float | None = 3600,
    key: str | None = None,
) -> Any:
    """`suspend_flow_run` for async flows."""
    if flow_run_id is not None:
        log = config.current().log
        await asyncio.to_thread(run_cases.suspend_flow_run, log, flow_run_id, timeout=timeout, key=key, actor="sdk")
        return None
    pause = _Pause(wait_for_input, timeout, key, suspend=True)
    resumed = await asyncio.to_thread(pause.already_resumed)
    if resumed is not None:
        return _received(pause.model, resumed)
    await asyncio.to_thread(pause.write)
    pause.suspended()


def _input_data(run_input: Mapping[str, Any] | BaseModel | None) -> dict[str, Any] | None:
    if run_input is None:
        return None
    if isinstance(run_input, BaseModel):
        return run_input.model_dump(mode="json")
    return dict(run_input)


def resume_flow_run(flow_run_id: UUID | str, run_input: Mapping[str, Any] | BaseModel | None = None) -> Any:
    """Resume a paused or suspended flow run, with the input it waits for (a dict, or an
    instance of its model). Raises RunNotFound, RunStateConflict (not paused), PauseExpired,
    InvalidRunInput. In async code it returns an awaitable."""
    if in_async_context():
        return aresume_flow_run(flow_run_id, run_input)
    run_cases.resume_flow_run(config.current().log, flow_run_id, _input_data(run_input), actor="sdk")
    return None


async def aresume_flow_run(flow_run_id: UUID | str, run_input: Mapping[str, Any] | BaseModel | None = None) -> None:
    """`resume_flow_run` for async code."""
    log = config.current().log
    await asyncio.to_thread(run_cases.resume_flow_run, log, flow_run_id, _input_data(run_input), actor="sdk")
