"""`@task`: a function whose every call inside a flow is a task run in the event log.

A call is a `TaskRun`: it writes `task-run.created` (the run is Pending from then), consults
the cache, then for each attempt `task-run.Running` and an outcome (`Completed`, `Failed`,
`TimedOut`, `AwaitingRetry`, `Crashed`). The sync and async drivers at the bottom only call
the function and wait; every decision lives in `TaskRun`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.states import STATE_NAMES
from ledgerflow.events.transitions import Accepted, Delayed, RunState, decide
from ledgerflow.runtime.hashing import hash_inputs
from ledgerflow.runtime.context import (
    FlowRunContext,
    RunInfo,
    TaskRunContext,
    flow_run_var,
    task_run_var,
)
from ledgerflow.runtime.control import run_cancellable
from ledgerflow.runtime.futures import TaskFuture, unmapped
from ledgerflow.runtime.logging import get_logger, run_logger
from ledgerflow.runtime.rendering import error_info, error_message, json_safe, run_name
from ledgerflow.runtime.replays import Prior
from ledgerflow.runtime.signals import Abort, Fail, Pause
from ledgerflow.runtime.process_pool import remote_runner
from ledgerflow.runtime.states import State
from ledgerflow.runtime.transactions import join_transaction

__all__ = ["Task", "exponential_backoff", "task"]

P = ParamSpec("P")
R = TypeVar("R")
RetryDelay = float | int | list[float] | Callable[[int], list[float]]
_SCALARS = (int, float, str, bool, bytes, type(None))
_PENDING = RunState.named("Pending")


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays of factor, 2x factor, 4x factor, ... seconds for each retry."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**attempt for attempt in range(retries)]

    return delays


class TaskTimeout(TimeoutError):
    pass


class Task(Generic[P, R]):
    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelay | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[[Task[..., Any], RunInfo, State], bool] | None = None,
        timeout_seconds: float | None = None,
        cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None] | None = None,
        cache_expiration: timedelta | None = None,
        refresh_cache: bool = False,
        persist_result: bool | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.tags = tuple(tags or ())
        self.version = version
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = timeout_seconds
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.persist_result = persist_result
        self.task_run_name = task_run_name
        self.log_prints = log_prints
        self.on_completion_hooks = list(on_completion or [])
        self.on_failure_hooks = list(on_failure or [])
        self.on_commit_hooks: list[Callable[..., Any]] = []
        self.on_rollback_hooks: list[Callable[..., Any]] = []
        self.task_key = f"{fn.__module__}.{fn.__qualname__}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        parameters = self._signature.parameters.values()
        self._simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters)
        self._names = tuple(p.name for p in parameters)
        self._defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    def __repr__(self) -> str:
        return f"Task({self.name!r})"

    def with_options(self, **options: Any) -> Task[P, R]:
        current = {
            "name": self.name, "description": self.description, "tags": self.tags, "version": self.version,
            "retries": self.retries, "retry_delay_seconds": self.retry_delay_seconds,
            "retry_jitter_factor": self.retry_jitter_factor, "retry_condition_fn": self.retry_condition_fn,
            "timeout_seconds": self.timeout_seconds, "cache_key_fn": self.cache_key_fn,
            "cache_expiration": self.cache_expiration, "refresh_cache": self.refresh_cache,
            "persist_result": self.persist_result, "task_run_name": self.task_run_name,
            "log_prints": self.log_prints, "on_completion": self.on_completion_hooks,
            "on_failure": self.on_failure_hooks,
        }
        clone = Task(self.fn, **{**current, **options})
        clone.on_commit_hooks, clone.on_rollback_hooks = list(self.on_commit_hooks), list(self.on_rollback_hooks)
        return clone

    def on_completion(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        self.on_completion_hooks.append(hook)
        return hook

    def on_commit(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Run `hook(transaction)` when the transaction this task's run completed in commits."""
        self.on_commit_hooks.append(hook)
        return hook

    def on_rollback(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Run `hook(transaction)` when the transaction this task's run completed in rolls back."""
        self.on_rollback_hooks.append(hook)
        return hook

    def on_failure(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        self.on_failure_hooks.append(hook)
        return hook

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        flow_run = flow_run_var.get()
        if flow_run is None:
            return self.fn(*args, **kwargs)  # outside a flow a task is a plain function call
        flow_run.control.check()
        run = TaskRun(self, flow_run, self._bind(args, kwargs), wait_for)
        if self.is_async:
            return _finish_async(run, return_state)
        return _finish(run_sync(run), return_state, flow_run)

    def submit(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> TaskFuture[R]:
        flow_run = _require_flow_run(self, "submit")
        flow_run.control.check()
        run = TaskRun(self, flow_run, self._bind(args, kwargs), wait_for)
        driver = (lambda: asyncio.run(run_async(run))) if self.is_async else (lambda: run_sync(run))
        future = flow_run.task_runner.submit(driver)
        flow_run.submitted.append((run, future))
        return TaskFuture(run.task_run_id, future)

    def map(self, *args: Any, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> list[TaskFuture[R]]:
        """One submitted run per element of the iterable arguments (`unmapped(x)` passes x whole)."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        mapped = {k: list(v) for k, v in bound.arguments.items() if _is_mappable(v)}
        if not mapped:
            raise ValueError(f"{self.name}.map() needs at least one iterable argument")
        lengths = {len(v) for v in mapped.values()}
        if len(lengths) > 1:
            raise ValueError(f"{self.name}.map() got iterables of different lengths: {sorted(lengths)}")
        static = {k: (v.value if isinstance(v, unmapped) else v) for k, v in bound.arguments.items() if k not in mapped}
        return [
            self.submit(**static, **{k: v[i] for k, v in mapped.items()}, wait_for=wait_for)
            for i in range(lengths.pop())
        ]

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        # Signature.bind costs ~13 us a call; plain parameters can be matched by name directly.
        if self._simple and len(args) <= len(self._names):
            arguments = dict(zip(self._names, args))
            if not kwargs.keys() & arguments.keys():
                arguments.update(kwargs)
                for name in self._names[len(args):]:
                    if name not in arguments and name in self._defaults:
                        arguments[name] = self._defaults[name]
                ordered = {name: arguments[name] for name in self._names if name in arguments}
                if len(ordered) == len(arguments) == len(self._names):
                    return ordered
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


def _is_mappable(value: Any) -> bool:
    return not isinstance(value, (unmapped, str, bytes, dict)) and isinstance(value, Iterable)


def _require_flow_run(task_: Task[..., Any], verb: str) -> FlowRunContext:
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError(f"{task_.name}.{verb}() must be called inside a flow run")
    return flow_run


def _finish(state: State, return_state: bool, flow_run: FlowRunContext) -> Any:
    """What a direct task call returns to the flow, unless the flow must stop now."""
    flow_run.control.check()
    return state if return_state else state.result()


async def _finish_async(run: TaskRun, return_state: bool) -> Any:
    state = await run_async(run)
    if run.flow_run.control.stopping:
        # In async code a stop unwinds as asyncio does it (gather and task groups expect that).
        raise asyncio.CancelledError(run.flow_run.control.reason)
    return state if return_state else state.result()


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Decorate a function as a task: `@task` or `@task(retries=3, ...)`."""
    if fn is not None:
        return Task(fn, **options)
    return lambda decorated: Task(decorated, **options)


# -- one task run -----------------------------------------------------------------------------


class TaskRun:
    """The events and decisions of one task call; the drivers below do the calling."""

    def __init__(
        self,
        task_: Task[..., Any],
        flow_run: FlowRunContext,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        child: str | None = None,
    ) -> None:
        self.task = task_
        self.child = child
        self.flow_run = flow_run
        self.task_run_id = new_id()
        self.task_run_id_text = str(self.task_run_id)
        self.attempt = 0
        self.upstream: list[str] = []
        self.upstream_failure: str | None = None
        self.parameters = self._resolve(parameters)
        for dependency in wait_for or ():
            self._resolve_value(dependency)
        self.occurrence = flow_run.occurrences[task_.task_key]
        flow_run.occurrences[task_.task_key] += 1
        self.name = run_name(
            task_.task_run_name, self.parameters, f"{task_.name}-{self.occurrence}", "task_run_name"
        )
        self.info = RunInfo(self.task_run_id, self.name, self.parameters, task_.tags)
        self.cache_key: str | None = None
        self.state: RunState | None = None
        self._started = time.perf_counter()
        self._record_created()

    # inputs: futures are waited for, and whatever came from another task run is lineage
    def _resolve(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return {name: self._resolve_value(value) for name, value in parameters.items()}

    def _resolve_value(self, value: Any) -> Any:
        if isinstance(value, _SCALARS):
            return value
        if isinstance(value, TaskFuture):
            state = value.state
            self._depends_on(str(value.task_run_id))
            if not state.is_completed():
                self.upstream_failure = f"upstream task run {value.task_run_id} is {state.name}"
                return None
            return state.result()
        if isinstance(value, unmapped):
            return self._resolve_value(value.value)
        produced = self.flow_run.produced_by.get(id(value))
        if produced is not None and produced[1] is value:
            self._depends_on(str(produced[0]))
        if isinstance(value, (list, tuple)):
            items = [self._resolve_value(item) for item in value]
            if isinstance(value, list):
                return items
            return tuple(items) if type(value) is tuple else value
        if isinstance(value, dict):
            return {k: self._resolve_value(v) for k, v in value.items()}
        return value

    def _depends_on(self, task_run_id: str) -> None:
        if task_run_id not in self.upstream:
            self.upstream.append(task_run_id)

    def _emit(self, name: str, **data: Any) -> None:
        data["flow_run_id"] = self.flow_run.flow_run_id
        data["task_run_id"] = self.task_run_id_text
        self.flow_run.emit(f"task-run.{name}", data)

    def _record_created(self) -> None:
        rendered = json_safe(self.parameters)
        self.input_hash = hash_inputs(self.parameters)
        data: dict[str, Any] = {
            "task_run_id": self.task_run_id_text,
            "flow_run_id": self.flow_run.flow_run_id,
            "task_key": self.task.task_key,
            "task_name": self.task.name,
            "run_name": self.name,
            "occurrence": self.occurrence,
            "input_hash": self.input_hash,
            "upstream": self.upstream,
            "tags": list(self.task.tags),
            "parameters": rendered,
        }
        if self.child is not None:
            data["child_flow_run_id"] = self.child
        self.flow_run.emit("task-run.created", data)
        self.state = _PENDING

    def _transition(self, name: str, **data: Any) -> bool:
        """Write `task-run.<name>` if the rule book allows it (waiting out a short delay)."""
        scheduled = data.get("scheduled_time")
        proposed = RunState(STATE_NAMES[name], name, datetime.fromisoformat(scheduled) if scheduled else None)
        decision = decide(self.state, proposed, utcnow())
        if isinstance(decision, Delayed):  # woken a moment early from a retry delay
            self.flow_run.control.wait((decision.until - utcnow()).total_seconds())
            decision = decide(self.state, proposed, decision.until)
        if not isinstance(decision, Accepted):
            get_logger().debug("task run %r: %s not written: %s", self.name, name, getattr(decision, "reason", decision))
            return False
        self.state = proposed
        data["state_type"] = proposed.type
        data["state_name"] = name
        self._emit(name, **data)
        return True

    # decisions ------------------------------------------------------------------------------

    def begin(self) -> State | None:
        """A final state if the run ends before calling the function (the flow must stop,
        an upstream failed, the cache has it)."""
        if self.flow_run.control.stopping:
            return self.cancelled()
        if self.upstream_failure is not None:
            return self.fail(RuntimeError(self.upstream_failure), "Failed", hooks=True)
        replay = self.flow_run.replay
        if replay is not None:
            reused = self._reuse(replay.match(self.task.task_key, self.task.name, self.occurrence, self.input_hash))
            if reused is not None:
                return reused
        if self.task.cache_key_fn is not None:
            context = self.context()
            self.cache_key = self.task.cache_key_fn(context, self.parameters)
            if self.cache_key and not self.task.refresh_cache:
                record = self.flow_run.runtime.cache.get(self.cache_key)
                if record is not None:
                    try:
                        value = self.flow_run.runtime.results.load_ref(record["result"])
                    except (FileNotFoundError, LookupError):
                        return None  # the stored result is gone: run for real
                    self._transition(
                        "Cached", cache_key=self.cache_key, cached_from=record["task_run_id"], result=record["result"],
                    )
                    return self._completed(value, "Cached")
        return None

    def _reuse(self, prior: Prior | None) -> State | None:
        """Take the original run's result instead of running (replay); None to run for real."""
        if prior is None or not prior.reusable:
            return None
        assert prior.result is not None
        try:
            value = self.flow_run.runtime.results.load_ref(dict(prior.result))
        except (FileNotFoundError, LookupError) as exc:
            run_logger(self.flow_run, self.info).warning(
                "Cannot reuse the result of task run %s (%s): running it again", prior.producer, exc
            )
            return None
        self._transition("Reused", cached_from=prior.producer, result=dict(prior.result),
                         message=f"reused from flow run {self.flow_run.replay.original if self.flow_run.replay else '?'}")
        self._produced(value)
        return self._completed(value, "Reused")

    def _produced(self, value: Any) -> None:
        """Remember that `value` came from this run, for the lineage of whatever it feeds."""
        if not isinstance(value, _SCALARS):
            self.flow_run.produced_by[id(value)] = (self.task_run_id, value)

    def context(self) -> TaskRunContext:
        log_prints = self.task.log_prints if self.task.log_prints is not None else self.flow_run.log_prints
        info = RunInfo(self.task_run_id, self.name, self.parameters, self.task.tags, self.attempt or 1)
        return TaskRunContext(self.task, info, self.flow_run.flow_run, self.flow_run, log_prints)

    def running(self) -> None:
        self.attempt += 1
        self._transition("Running", attempt=self.attempt)

    def succeeded(self, value: Any) -> State:
        if isinstance(value, State):
            if value.is_failed() or value.is_crashed() or value.is_cancelled():
                return self.fail(value.exception or Fail(value.message or value.name), value.name, hooks=True)
            value = value.result()
        result = None
        persist = self.task.persist_result if self.task.persist_result is not None else self.flow_run.persist_result
        if persist is not False:
            result = self.flow_run.runtime.results.persist(value)
        data: dict[str, Any] = {"attempt": self.attempt}
        if result is not None:
            data["result"] = result
        if self.cache_key:
            data["cache_key"] = self.cache_key
            if result is not None and result["persisted"]:
                self.flow_run.runtime.cache.put(self.cache_key, str(self.task_run_id), result, self.task.cache_expiration)
        self._transition("Completed", **data)
        self._produced(value)
        join_transaction(self, value)  # inside `with transaction():` it commits or rolls back with it
        return self._completed(value, "Completed")

    def failed(self, error: BaseException) -> State | float:
        """The final state, or the delay before the next attempt."""
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: the process is going
            self.crashed(error)
            raise error
        if isinstance(error, Pause):
            return self._paused(error)
        name = "TimedOut" if isinstance(error, TaskTimeout) else "Failed"
        if self.attempt <= self.task.retries and not isinstance(error, Abort) and self._should_retry(error, name):
            delay = self._retry_delay()
            due = utcnow() + timedelta(seconds=delay)
            run_logger(self.flow_run, self.info).warning(
                "Task run failed with %s - Retry %d/%d will start in %.2f seconds",
                error_message(error), self.attempt, self.task.retries, delay,
            )
            self._transition("AwaitingRetry", attempt=self.attempt, message=error_message(error),
                             error=error_info(error), scheduled_time=due.isoformat())
            return delay
        return self.fail(error, name, hooks=True)

    def crashed(self, error: BaseException) -> None:
        self._transition("Crashed", attempt=self.attempt, message=f"{type(error).__name__}", error=error_info(error))

    def cancelled(self, message: str | None = None) -> State:
        """The run ends without (another) call: its flow run was told to stop."""
        message = message or self.flow_run.control.reason or "the flow run was cancelled"
        self._transition("Cancelled", attempt=max(self.attempt, 1), message=message)
        return self._state("Cancelled", message=message)

    def _should_retry(self, error: Exception, name: str) -> bool:
        condition = self.task.retry_condition_fn
        if condition is None:
            return True
        return bool(condition(self.task, self.info, self._state(name, exception=error, message=error_message(error))))

    def _retry_delay(self) -> float:
        setting = self.task.retry_delay_seconds
        if setting is None:
            delay = 0.0
        elif isinstance(setting, (int, float)):
            delay = float(setting)
        else:
            delays = setting(self.task.retries) if callable(setting) else setting
            delay = float(delays[min(self.attempt - 1, len(delays) - 1)]) if delays else 0.0
        jitter = self.task.retry_jitter_factor
        if jitter:
            delay = max(0.0, delay * (1 + random.uniform(-jitter, jitter)))
        return delay

    def fail(self, error: BaseException, name: str, hooks: bool) -> State:
        run_logger(self.flow_run, self.info).error("Finished in state %s: %s", name, error_message(error))
        self._transition(name, attempt=max(self.attempt, 1), message=error_message(error), error=error_info(error))
        self.flow_run.runtime.writer.nudge()
        state = self._state(name, exception=error, message=error_message(error))
        if hooks:
            self._call_hooks(self.task.on_failure_hooks, state)
        return state

    def _paused(self, pause: Pause) -> State:
        self._transition("Paused", attempt=max(self.attempt, 1), message=str(pause))
        return self._state("Paused", exception=pause, message=str(pause))

    def _completed(self, value: Any, name: str) -> State:
        state = self._state(name, value=value)
        self._call_hooks(self.task.on_completion_hooks, state)
        return state

    def _state(self, name: str, **kwargs: Any) -> State:
        return State(STATE_NAMES[name], name, flow_run_id=self.flow_run.flow_run.id, task_run_id=self.task_run_id, **kwargs)

    def _call_hooks(self, hooks: list[Callable[..., Any]], state: State) -> None:
        for hook in hooks:
            try:
                hook(self.task, self.info, state)
            except Exception:  # noqa: BLE001 - a failing hook is logged, the run's outcome stands
                get_logger().exception("hook %s of task run %r failed", getattr(hook, "__name__", hook), self.name)


# -- drivers ------------------------------------------------------------------------------------


def run_sync(run: TaskRun) -> State:
    final = run.begin()
    if final is not None:
        return final
    while True:
        run.running()
        context = run.context()
        token = task_run_var.set(context)
        try:
            value = _call_with_timeout(run.task, run.parameters)
        except BaseException as error:  # noqa: BLE001 - every outcome is recorded
            task_run_var.reset(token)
            outcome = run.failed(error)
            if isinstance(outcome, State):
                return outcome
            if run.flow_run.control.wait(outcome):
                return run.cancelled()
            continue
        task_run_var.reset(token)
        return run.succeeded(value)


def _call_with_timeout(task_: Task[..., Any], parameters: dict[str, Any]) -> Any:
    remote = remote_runner()
    if remote is not None:  # a ProcessPoolTaskRunner: the call runs in a worker process
        return remote.call(task_, parameters, task_.timeout_seconds)
    return call_with_timeout(task_.fn, parameters, task_.timeout_seconds, "task run")


def call_with_timeout(fn: Callable[..., Any], parameters: dict[str, Any], timeout: float | None, what: str) -> Any:
    """Call `fn`; past `timeout` seconds raise TaskTimeout (the call is left to finish alone)."""
    if timeout is None:
        return fn(**parameters)
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def call() -> None:
        try:
            outcome["value"] = context.run(fn, **parameters)
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            outcome["error"] = error

    worker = threading.Thread(target=call, name=f"ledgerflow-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TaskTimeout(f"{what} exceeded its timeout of {timeout} seconds")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def run_async(run: TaskRun) -> State:
    final = run.begin()
    if final is not None:
        return final
    control = run.flow_run.control
    while True:
        run.running()
        token = task_run_var.set(run.context())
        try:
            remote = remote_runner()
            call = remote.call_async(run.task, run.parameters) if remote is not None else run.task.fn(**run.parameters)
            value = await run_cancellable(control, call, run.task.timeout_seconds)
        except BaseException as raised:  # noqa: BLE001 - every outcome is recorded
            task_run_var.reset(token)
            if isinstance(raised, asyncio.CancelledError) and control.stopping:
                return run.cancelled()
            error = raised
            if isinstance(raised, TimeoutError) and run.task.timeout_seconds is not None:
                error = TaskTimeout(f"task run exceeded its timeout of {run.task.timeout_seconds} seconds")
            outcome = run.failed(error)
            if isinstance(outcome, State):
                return outcome
            try:
                await run_cancellable(control, asyncio.sleep(outcome))
            except asyncio.CancelledError:
                if not control.stopping:
                    raise
                return run.cancelled()
            continue
        task_run_var.reset(token)
        return run.succeeded(value)
