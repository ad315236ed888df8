"""`@flow`: a function whose every call is a flow run, one stream `flow-run-<id>` in the log.

A flow run writes `flow-run.created` (Pending from then), `flow-run.Running` per attempt and
its outcome, with its task runs, logs and artifacts in between. A flow called inside another
flow is a subflow: a task run in the parent's stream stands for it, and the child's own
stream names that task run. When a flow call returns or raises, everything its run emitted
has been committed.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from pydantic import ConfigDict, ValidationError, create_model

from ledgerflow.events import EventMeta
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.states import STATE_NAMES, StateType
from ledgerflow.runtime import config
from ledgerflow.runtime.context import FlowRunContext, RunInfo, flow_run_var, task_run_var
from ledgerflow.runtime.futures import TaskFuture
from ledgerflow.runtime.logging import get_logger, run_logger, setup_for_runs
from ledgerflow.runtime.rendering import error_info, error_message, json_safe, run_name
from ledgerflow.runtime.signals import Abort, ParameterValidationError, Pause
from ledgerflow.runtime.states import State
from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner
from ledgerflow.runtime.tasks import Task, TaskRun, TaskTimeout, call_with_timeout

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int = 0,
        retry_delay_seconds: float = 0,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        log_prints: bool | None = None,
        task_runner: ThreadPoolTaskRunner | None = None,
        tags: Iterable[str] | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.log_prints = log_prints
        self.task_runner = task_runner or ThreadPoolTaskRunner()
        self.tags = tuple(tags or ())
        self.on_completion_hooks = list(on_completion or [])
        self.on_failure_hooks = list(on_failure or [])
        self.on_crashed_hooks = list(on_crashed or [])
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._model: Any = None
        source = inspect.getsourcefile(fn)
        self.entrypoint = f"{Path(source).resolve()}:{fn.__name__}" if source else None

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    def with_options(self, **options: Any) -> Flow[P, R]:
        current = {
            "name": self.name, "description": self.description, "version": self.version,
            "flow_run_name": self.flow_run_name, "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds, "timeout_seconds": self.timeout_seconds,
            "validate_parameters": self.validate_parameters, "persist_result": self.persist_result,
            "log_prints": self.log_prints, "task_runner": self.task_runner, "tags": self.tags,
            "on_completion": self.on_completion_hooks, "on_failure": self.on_failure_hooks,
            "on_crashed": self.on_crashed_hooks,
        }
        return Flow(self.fn, **{**current, **options})

    def on_completion(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        self.on_completion_hooks.append(hook)
        return hook

    def on_failure(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        self.on_failure_hooks.append(hook)
        return hook

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        parameters = self.validated(args, kwargs)
        if self.is_async:
            return _run_async(self, parameters, return_state)
        run = FlowRun(self, parameters)
        with run.guarded():
            state = run.drive_sync()
        return state if return_state else state.result()

    def validated(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's parameters by name, checked against the signature's annotations."""
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterValidationError(f"flow {self.name!r}: {exc}") from None
        bound.apply_defaults()
        parameters = dict(bound.arguments)
        if not self.validate_parameters:
            return parameters
        try:
            validated = self._parameter_model().model_validate(parameters)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ParameterValidationError(f"flow {self.name!r} got invalid parameters: {problems}") from None
        return {name: getattr(validated, name) for name in parameters}

    def _parameter_model(self) -> Any:
        if self._model is None:
            fields: dict[str, Any] = {}
            for name, parameter in self._signature.parameters.items():
                if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                    fields[name] = (Any, ...)
                    continue
                annotation = Any if parameter.annotation is parameter.empty else parameter.annotation
                default = ... if parameter.default is parameter.empty else parameter.default
                fields[name] = (annotation, default)
            self._model = create_model(
                f"{self.fn.__name__}_parameters",
                __config__=ConfigDict(arbitrary_types_allowed=True),
                **fields,
            )
        return self._model


async def _run_async(flow_: Flow[..., Any], parameters: dict[str, Any], return_state: bool) -> Any:
    run = FlowRun(flow_, parameters)
    with run.guarded():
        state = await run.drive_async()
    return state if return_state else state.result()


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(**options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Decorate a function as a flow: `@flow` or `@flow(name=..., retries=...)`."""
    if fn is not None:
        return Flow(fn, **options)
    return lambda decorated: Flow(decorated, **options)


class FlowRun:
    """One call of a flow: its events, its context and its outcome."""

    def __init__(self, flow_: Flow[..., Any], parameters: dict[str, Any]) -> None:
        self.flow = flow_
        self.parent = flow_run_var.get()
        self.runtime = self.parent.runtime if self.parent else config.current()
        self.flow_run_id = new_id()
        self.parameters = parameters
        self.name = run_name(
            flow_.flow_run_name, parameters, f"{flow_.name}-{self.flow_run_id.hex[-8:]}", "flow_run_name"
        )
        self.attempt = 0
        root = self.parent.meta.correlation_id if self.parent else self.flow_run_id
        log_prints = flow_.log_prints if flow_.log_prints is not None else bool(self.parent and self.parent.log_prints)
        self.context = FlowRunContext(
            flow=flow_,
            flow_run=RunInfo(self.flow_run_id, self.name, parameters, flow_.tags),
            stream=flow_run_stream(self.flow_run_id),
            runtime=self.runtime,
            task_runner=flow_.task_runner.fresh(),
            meta=EventMeta(correlation_id=root),
            log_prints=log_prints,
            persist_result=flow_.persist_result,
        )
        self.parent_task: Any = None
        setup_for_runs()
        self._record_created(root)

    def _record_created(self, root: Any) -> None:
        data: dict[str, Any] = {
            "flow_run_id": str(self.flow_run_id),
            "flow_name": self.flow.name,
            "run_name": self.name,
            "parameters": json_safe(self.parameters),
            "tags": list(self.flow.tags),
            "root_flow_run_id": str(root),
        }
        if self.flow.entrypoint:
            data["entrypoint"] = self.flow.entrypoint
        if self.flow.version:
            data["flow_version"] = self.flow.version
        if self.parent is not None:
            stand_in = Task(self.flow.fn, name=self.flow.name, persist_result=False)
            self.parent_task = TaskRun(stand_in, self.parent, self.parameters, None, child=str(self.flow_run_id))
            self.parent_task.running()
            data["parent_flow_run_id"] = str(self.parent.flow_run.id)
            data["parent_task_run_id"] = str(self.parent_task.task_run_id)
        self.context.emit("flow-run.created", data)

    def _emit_state(self, name: str, **data: Any) -> None:
        data.update(flow_run_id=str(self.flow_run_id), state_type=STATE_NAMES[name], state_name=name)
        self.context.emit(f"flow-run.{name}", data)

    # -- driving ------------------------------------------------------------------------------

    @contextmanager
    def guarded(self) -> Any:
        """Run context set, SIGTERM turned into a crash, every event committed at the end."""
        token = flow_run_var.set(self.context)
        outer_task = task_run_var.set(None)
        restore = _crash_on_sigterm() if self.parent is None else None
        try:
            yield
        finally:
            task_run_var.reset(outer_task)
            flow_run_var.reset(token)
            if restore is not None:
                restore()
            self.runtime.writer.flush()

    def drive_sync(self) -> State:
        while True:
            self._running()
            try:
                value = self._call_sync()
                value = self._settle(value)
            except BaseException as error:  # noqa: BLE001 - every outcome is recorded
                outcome = self._failed(error)
                if isinstance(outcome, State):
                    return outcome
                time.sleep(outcome)
                continue
            return self._succeeded(value)

    async def drive_async(self) -> State:
        while True:
            self._running()
            try:
                call = self.flow.fn(**self.parameters)
                if self.flow.timeout_seconds is not None:
                    try:
                        value = await asyncio.wait_for(call, self.flow.timeout_seconds)
                    except TimeoutError:
                        raise TaskTimeout(f"flow run exceeded its timeout of {self.flow.timeout_seconds} seconds") from None
                else:
                    value = await call
                value = self._settle(value)
            except BaseException as error:  # noqa: BLE001 - every outcome is recorded
                outcome = self._failed(error)
                if isinstance(outcome, State):
                    return outcome
                await asyncio.sleep(outcome)
                continue
            return self._succeeded(value)

    def _running(self) -> None:
        self.attempt += 1
        self._emit_state("Running", attempt=self.attempt)

    def _call_sync(self) -> Any:
        return call_with_timeout(self.flow.fn, self.parameters, self.flow.timeout_seconds, "flow run")

    def _settle(self, value: Any) -> Any:
        """Wait for submitted task runs; a returned future or state gives the flow its outcome."""
        self.context.task_runner.shutdown()
        if isinstance(value, TaskFuture):
            return value.result()
        if isinstance(value, list) and value and all(isinstance(v, TaskFuture) for v in value):
            return [future.result() for future in value]
        if isinstance(value, State):
            return value.result()
        return value

    def _succeeded(self, value: Any) -> State:
        data: dict[str, Any] = {"attempt": self.attempt}
        if self.flow.persist_result is not False:
            data["result"] = self.runtime.results.persist(value)
        run_logger(self.context).info("Finished in state Completed")
        self._emit_state("Completed", **data)
        state = State(StateType.COMPLETED, "Completed", flow_run_id=self.flow_run_id, value=value)
        if self.parent_task is not None:
            self.parent_task.succeeded(value)
        self._hooks(self.flow.on_completion_hooks, state)
        return state

    def _failed(self, error: BaseException) -> State | float:
        if not isinstance(error, Exception):
            # The process is going: do not wait for submitted runs; those never started crash too.
            self.context.task_runner.shutdown(wait=False)
            for task_run, future in self.context.submitted:
                if future.cancelled():
                    task_run.crashed(error)
            self._emit_state("Crashed", attempt=self.attempt, message=error_message(error), error=error_info(error))
            state = State(StateType.CRASHED, "Crashed", error_message(error), flow_run_id=self.flow_run_id, exception=error)
            self._hooks(self.flow.on_crashed_hooks, state)
            if self.parent_task is not None:
                self.parent_task.crashed(error)
            raise error
        self.context.task_runner.shutdown()
        if isinstance(error, Pause):
            self._emit_state("Paused", attempt=self.attempt, message=str(error))
            if self.parent_task is not None:
                self.parent_task.failed(error)
            return State(StateType.PAUSED, "Paused", str(error), flow_run_id=self.flow_run_id, exception=error)
        name = "TimedOut" if isinstance(error, TaskTimeout) else "Failed"
        if self.attempt <= self.flow.retries and not isinstance(error, Abort):
            due = utcnow() + timedelta(seconds=self.flow.retry_delay_seconds)
            self._emit_state("AwaitingRetry", attempt=self.attempt, message=error_message(error), error=error_info(error),
                             scheduled_time=due.isoformat())
            return float(self.flow.retry_delay_seconds)
        run_logger(self.context).error("Finished in state %s: %s", name, error_message(error))
        self._emit_state(name, attempt=self.attempt, message=error_message(error), error=error_info(error))
        state = State(STATE_NAMES[name], name, error_message(error), flow_run_id=self.flow_run_id, exception=error)
        if self.parent_task is not None:
            self.parent_task._fail(error, name, hooks=False)
        self._hooks(self.flow.on_failure_hooks, state)
        return state

    def _hooks(self, hooks: list[Callable[..., Any]], state: State) -> None:
        for hook in hooks:
            try:
                hook(self.flow, self.context.flow_run, state)
            except Exception:  # noqa: BLE001 - a failing hook is logged, the outcome stands
                get_logger().exception("hook %s of flow run %r failed", getattr(hook, "__name__", hook), self.name)


class _Terminated(SystemExit):
    pass


def _crash_on_sigterm() -> Callable[[], None] | None:
    """In the main thread, turn SIGTERM into an exception so the run can record its crash."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated(128 + signum)

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, terminate)
    return restore

