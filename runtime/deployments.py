"""Deployments from Python: build one from a flow (its parameters checked against the flow's
signature), register it (`Flow.deploy`, `Flow.to_deployment(...).apply()`), serve it (`serve`,
`Flow.serve`: runs/serving.py), and run one (`run_deployment`).

`build_spec(entrypoint, ...)` loads the flow in this process and checks the parameters: the
deployment's own may leave required ones out (a manual run gives them), each schedule's,
merged over the deployment's, must be complete and valid. The deployment records the flow's
parameters as JSON Schema, so that a run request is checked (names, required ones) where the
flow's code is not at hand.

`run_deployment("flow/deployment", ...)` requests a run through the configured log (store or
server) and, by default, waits for it to end. Called inside a flow, the child run is linked to
its caller like a subflow: a stand-in task run in the parent's stream, and the child's
`flow-run.created` naming the parent flow run and that task run.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from ledgerflow.events.deployments import (
    ApplyResult,
    DeploymentError,
    DeploymentSpec,
    InvalidParameters,
    apply_deployment,
    deployment_id,
    merged_parameters,
    request_deployment_run,
)
from ledgerflow.events.errors import InvalidEvent
from ledgerflow.events.model import new_id
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.schedules import CronSchedule, IntervalSchedule, RRuleSchedule, Schedule, ScheduleError
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.events.transitions import fold
from ledgerflow.runtime import config
from ledgerflow.runtime.context import flow_run_var
from ledgerflow.runtime.entrypoints import EntrypointError, load_entrypoint
from ledgerflow.runtime.rendering import json_safe
from ledgerflow.runtime.states import State

if TYPE_CHECKING:
    from ledgerflow.runtime.flows import Flow

__all__ = [
    "Cron",
    "DeploymentError",
    "Interval",
    "RRule",
    "RunnerDeployment",
    "build_spec",
    "build_spec_isolated",
    "parameter_schema",
    "run_deployment",
    "schedules_from",
]


def Cron(cron: str, /, timezone: str | None = None, day_or: bool = True, active: bool = True,
         parameters: Mapping[str, Any] | None = None, slug: str | None = None) -> CronSchedule:
    """A cron schedule (as `prefect.schedules.Cron`)."""
    return CronSchedule(cron=cron, timezone=timezone or "UTC", day_or=day_or, active=active,
                        parameters=dict(parameters or {}), slug=slug)


def Interval(interval: float | timedelta, /, anchor_date: datetime | None = None, timezone: str | None = None,
             active: bool = True, parameters: Mapping[str, Any] | None = None, slug: str | None = None) -> IntervalSchedule:
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
    values: dict[str, Any] = {"interval": seconds, "timezone": timezone or "UTC", "active": active,
                              "parameters": dict(parameters or {}), "slug": slug}
    if anchor_date is not None:
        values["anchor_date"] = anchor_date
    return IntervalSchedule(**values)


def RRule(rrule: str, /, timezone: str | None = None, active: bool = True,
          parameters: Mapping[str, Any] | None = None, slug: str | None = None) -> RRuleSchedule:
    return RRuleSchedule(rrule=rrule, timezone=timezone or "UTC", active=active, parameters=dict(parameters or {}),
                         slug=slug)


def schedules_from(
    *, cron: Sequence[str] | str | None = None, interval: Sequence[float | timedelta] | float | timedelta | None = None,
    rrule: Sequence[str] | str | None = None, timezone: str | None = None, anchor_date: datetime | None = None,
) -> list[Schedule]:
    """Schedules from the shorthand options of the CLI, `to_deployment` and `serve`."""
    found: list[Schedule] = []
    try:
        for expression in [cron] if isinstance(cron, str) else cron or []:
            found.append(Cron(expression, timezone=timezone))
        for every in [interval] if isinstance(interval, (int, float, timedelta)) else interval or []:
            found.append(Interval(every, anchor_date=anchor_date, timezone=timezone))
        for rule in [rrule] if isinstance(rrule, str) else rrule or []:
            found.append(RRule(rule, timezone=timezone))
    except ValidationError as exc:
        raise DeploymentError(_problems(exc)) from None
    except ScheduleError as exc:
        raise DeploymentError(str(exc)) from None
    return found


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        (f"{'.'.join(map(str, e['loc']))}: " if e['loc'] else "") + str(e['msg']).removeprefix('Value error, ') for e in exc.errors()
    )


def parameter_schema(flow_: Flow[..., Any]) -> dict[str, Any]:
    """The flow's parameters as JSON Schema: properties (with types where pydantic can say),
    required names, and whether it takes any keyword (`**kwargs`)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra = False
    for name, parameter in inspect.signature(flow_.fn).parameters.items():
        if parameter.kind == parameter.VAR_KEYWORD:
            extra = True
            continue
        if parameter.kind == parameter.VAR_POSITIONAL:
            continue
        schema: dict[str, Any] = {}
        if parameter.annotation is not parameter.empty:
            try:
                schema = TypeAdapter(parameter.annotation).json_schema()
            except Exception:  # noqa: BLE001 - a type pydantic cannot describe: no schema for it
                schema = {}
        if parameter.default is parameter.empty:
            required.append(name)
        else:
            schema["default"] = json_safe(parameter.default)
        properties[name] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": extra}


def _check_values(flow_: Flow[..., Any], values: Mapping[str, Any], where: str) -> None:
    """Each given value against its parameter's annotation."""
    signature = inspect.signature(flow_.fn)
    for name, value in values.items():
        parameter = signature.parameters.get(name)
        if parameter is None or parameter.annotation is parameter.empty or not flow_.validate_parameters:
            continue
        try:
            TypeAdapter(parameter.annotation).validate_python(value)
        except ValidationError as exc:
            raise InvalidParameters(f"{where}: parameter {name!r}: {_problems(exc)}") from None
        except Exception:  # noqa: BLE001 - an annotation pydantic cannot validate: the run checks it
            continue


def build_spec(
    entrypoint: str,
    *,
    name: str,
    working_dir: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    schedules: Sequence[Schedule] = (),
    tags: Sequence[str] = (),
    work_pool: str | None = "default",
    work_queue: str | None = None,
    concurrency_limit: int | None = None,
    description: str | None = None,
    version: str | None = None,
    flow_: Flow[..., Any] | None = None,
) -> DeploymentSpec:
    """The definition of deployment `name` of the flow at `entrypoint`, loaded here to check
    the parameters. Raises DeploymentError (InvalidParameters, a flow that cannot be loaded)."""
    from ledgerflow.runtime.flows import Flow

    if "\x00" in entrypoint or "\x00" in str(working_dir or ""):
        raise DeploymentError("an entrypoint or working directory cannot contain a NUL character")
    folder = str(Path(working_dir or Path.cwd()).resolve())
    entrypoint = entrypoint.removeprefix("./")
    if flow_ is None:
        try:
            loaded = load_entrypoint(entrypoint, folder)
        except EntrypointError as exc:
            raise DeploymentError(str(exc)) from None
        if not isinstance(loaded, Flow):
            raise DeploymentError(f"{entrypoint} is a {type(loaded).__name__}, not a @flow")
        flow_ = loaded
    values = dict(parameters or {})
    try:
        spec = DeploymentSpec(
            flow_name=flow_.name, name=name, entrypoint=entrypoint, working_dir=folder, parameters=values,
            parameter_schema=parameter_schema(flow_), tags=list(tags), work_pool=work_pool, work_queue=work_queue,
            schedules=list(schedules), concurrency_limit=concurrency_limit,
            description=description if description is not None else flow_.description, version=version,
        )
    except ValidationError as exc:
        raise DeploymentError(f"invalid deployment: {_problems(exc)}") from None
    merged_parameters(spec.model_copy(update={"parameter_schema": {**(spec.parameter_schema or {}), "required": []}}))
    _check_values(flow_, values, f"deployment {spec.full_name}")
    for schedule in spec.schedules:
        where = f"schedule {schedule.describe()}"
        try:
            complete = merged_parameters(spec, schedule.parameters)
        except InvalidParameters as exc:
            raise InvalidParameters(f"{where}: {exc}") from None
        _check_values(flow_, complete, where)
    return spec


@dataclass
class RunnerDeployment:
    """A deployment of a flow defined in Python, not registered yet (`Flow.to_deployment`)."""

    spec: DeploymentSpec
    paused: bool | None = None
    flow: Flow[..., Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.full_name

    @property
    def id(self) -> UUID:
        return self.spec.id

    def apply(self) -> ApplyResult:
        """Register (create or update) it in the configured log; a no-op when unchanged."""
        return apply_deployment(config.current().log, self.spec, paused=self.paused, actor="sdk")


def to_deployment(flow_: Flow[..., Any], name: str, **options: Any) -> RunnerDeployment:
    """`Flow.to_deployment`: Prefect's arguments (cron, interval, rrule, schedules, parameters,
    tags, description, version, work_pool_name, work_queue_name, concurrency_limit, paused),
    plus `timezone` for the shorthand schedules."""
    located = flow_.entrypoint
    if located is None:
        raise DeploymentError(f"flow {flow_.name!r} is defined inside a function: another process cannot load it")
    known = {"cron", "interval", "rrule", "schedules", "schedule", "timezone", "anchor_date", "parameters", "tags",
             "description", "version", "work_pool_name", "work_queue_name", "concurrency_limit", "paused"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"to_deployment() got unexpected arguments: {', '.join(unknown)}")
    schedules = list(options.get("schedules") or []) + ([options["schedule"]] if options.get("schedule") else [])
    schedules += schedules_from(cron=options.get("cron"), interval=options.get("interval"), rrule=options.get("rrule"),
                                timezone=options.get("timezone"), anchor_date=options.get("anchor_date"))
    spec = build_spec(
        located.entrypoint, name=name, working_dir=located.working_dir, parameters=options.get("parameters"),
        schedules=schedules, tags=list(options.get("tags") or []),
        work_pool=options.get("work_pool_name", "default"), work_queue=options.get("work_queue_name"),
        concurrency_limit=options.get("concurrency_limit"), description=options.get("description"),
        version=options.get("version") or flow_.version, flow_=flow_,
    )
    return RunnerDeployment(spec, options.get("paused"), flow_)


# -- running a deployment -----------------------------------------------------------------


def _deployment_run(name: str) -> None:
    """Stands for a `run_deployment` call in its caller's stream (the task it is a run of)."""


def run_deployment(
    name: str | UUID,
    parameters: Mapping[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    timeout: float | None = None,
    poll_interval: float = 0.2,
    as_subflow: bool = True,
) -> State:
    """Request a run of deployment `name` ("flow-name/deployment-name", or its id) and wait
    for it to end (at most `timeout` seconds; 0: do not wait). Returns its state as last seen;
    a completed run's `state.result()` is its value when the result was stored.

    Inside a flow (and with `as_subflow`) the run is the caller's child: a task run of the
    caller stands for it. Raises DeploymentError (unknown deployment, bad parameters)."""
    from ledgerflow.runtime.task_engine import TaskRun
    from ledgerflow.runtime.tasks import Task

    parent = flow_run_var.get()
    runtime = parent.runtime if parent is not None else config.current()
    text = str(name)
    ident = str(deployment_id(text)) if "/" in text else text
    run_id = new_id()
    stand_in: TaskRun | None = None
    links: dict[str, Any] = {}
    if parent is not None and as_subflow:
        task_ = Task(_deployment_run, name=text, persist_result=False)
        stand_in = TaskRun(task_, parent, dict(parameters or {}), None, child=str(run_id))
        stand_in.running()
        links = {"parent_flow_run_id": str(parent.flow_run.id), "parent_task_run_id": str(stand_in.task_run_id),
                 "root_flow_run_id": str(parent.meta.correlation_id or parent.flow_run.id)}
        runtime.writer.flush()
    try:
        request_deployment_run(runtime.log, ident, parameters=parameters, scheduled_time=scheduled_time,
                               flow_run_id=run_id, actor="run_deployment", **links)
    except (DeploymentError, InvalidEvent) as exc:
        if stand_in is not None:
            stand_in.fail(exc, "Failed", hooks=False)
        raise
    state = _wait(runtime, run_id, timeout, poll_interval)
    if stand_in is not None:
        _settle_stand_in(stand_in, state)
    return state


def _wait(runtime: config.Runtime, run_id: UUID, timeout: float | None, poll_interval: float) -> State:
    stream = flow_run_stream(run_id)
    events = runtime.log.read_stream(stream)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = fold(e for e in events if e.type.startswith("flow-run."))
        if (state is not None and state.type in TERMINAL) or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(poll_interval)
        events += runtime.log.read_stream(stream, (events[-1].stream_position + 1) if events else 1)
    if state is None:
        return State(StateType.SCHEDULED, "Scheduled", flow_run_id=run_id)
    last = next((e for e in reversed(events) if e.type == f"flow-run.{state.name}"), None)
    data = last.data if last is not None else {}
    value: Any = None
    if state.name == "Completed" and isinstance(data.get("result"), dict):
        try:
            value = runtime.results.load_ref(data["result"])
        except (FileNotFoundError, LookupError, ValueError):
            value = None  # stored where this process cannot read it
    message = data.get("message")
    return State(STATE_NAMES[state.name], state.name, str(message) if message else None, flow_run_id=run_id,
                 value=value)


def _settle_stand_in(stand_in: Any, state: State) -> None:
    if state.is_completed():
        stand_in.succeeded(state.result())
    elif state.is_cancelled():
        stand_in.cancelled(state.message or "the deployment's run was cancelled")
    elif state.is_final():
        stand_in.fail(RuntimeError(state.message or f"the deployment's run is {state.name}"), state.name, hooks=False)
    else:
        stand_in.succeeded(None)  # not waited for (timeout): the request itself succeeded


def _build_in_child(options: dict[str, Any]) -> dict[str, Any]:
    schedules = [IntervalSchedule.model_validate(s) if s.get("kind") == "interval" else
                 CronSchedule.model_validate(s) if s.get("kind") == "cron" else RRuleSchedule.model_validate(s)
                 for s in options.pop("schedules", [])]
    try:
        return {"spec": build_spec(schedules=schedules, **options).as_data()}
    except DeploymentError as exc:
        return {"error": str(exc), "parameters": isinstance(exc, InvalidParameters)}


def build_spec_isolated(entrypoint: str, **options: Any) -> DeploymentSpec:
    """`build_spec` in a fresh child process (a server checking a deployment it is sent: the
    flow's code is imported there, never into the server, and each time anew)."""
    from concurrent.futures import ProcessPoolExecutor

    from ledgerflow.runtime.runner import fork_server

    options["schedules"] = [s.model_dump(mode="json") for s in options.get("schedules", [])]
    with ProcessPoolExecutor(max_workers=1, mp_context=fork_server(), max_tasks_per_child=1) as pool:
        outcome = pool.submit(_build_in_child, {"entrypoint": entrypoint, **options}).result(timeout=120)
    if "error" in outcome:
        raise (InvalidParameters if outcome["parameters"] else DeploymentError)(outcome["error"])
    return DeploymentSpec.model_validate(outcome["spec"])
