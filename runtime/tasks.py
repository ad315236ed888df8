"""`@task`: a function whose every call inside a flow is a task run in the event log.

Calling a task runs it and returns its value; `.submit()` returns a future at once (its run
waits for its upstream runs in the task runner, not in the caller); `.map()` submits one run
per element of its iterable arguments and returns a `TaskFutureList`. Outside a flow, calling a
task simply calls the function. The run itself is runtime/task_engine.py.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ledgerflow.runtime.annotations import allow_failure, opaque, quote, unmapped
from ledgerflow.runtime.cache import DEFAULT, NO_CACHE, CachePolicy
from ledgerflow.runtime.context import FlowRunContext, RunInfo, TaskRunContext, flow_run_var
from ledgerflow.runtime.entrypoints import module_label
from ledgerflow.runtime.futures import TaskFuture, TaskFutureList
from ledgerflow.runtime.hooks import Hooks
from ledgerflow.runtime.inputs import needs_waiting
from ledgerflow.runtime.signals import MappingLengthMismatch, MappingMissingIterable, ReservedArgumentError
from ledgerflow.runtime.states import State
from ledgerflow.runtime.task_engine import TaskRun, run_async, run_sync

__all__ = ["Task", "exponential_backoff", "task"]

P = ParamSpec("P")
R = TypeVar("R")
RetryDelay = float | int | list[float] | Callable[[int], list[float]]
_NOT_SET: Any = object()


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays of factor, 2x factor, 4x factor, ... seconds for each retry."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**attempt for attempt in range(retries)]

    return delays


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
        cache_policy: CachePolicy | None = _NOT_SET,
        cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None] | None = None,
        cache_expiration: timedelta | None = None,
        refresh_cache: bool = False,
        persist_result: bool | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        signature = inspect.signature(fn)
        if "wait_for" in signature.parameters:
            raise ReservedArgumentError("'wait_for' is a reserved argument name and cannot be used in task functions.")
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
        if cache_policy is _NOT_SET:
            # Prefect 3: cache by inputs, source and run unless the result is not kept.
            cache_policy = NO_CACHE if persist_result is False else DEFAULT
        self.cache_policy = None if isinstance(cache_policy, type(NO_CACHE)) else cache_policy
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.refresh_cache = refresh_cache
        self.persist_result = persist_result
        self.task_run_name = task_run_name
        self.log_prints = log_prints
        self.hooks = Hooks(on_completion=on_completion, on_failure=on_failure, on_running=on_running,
                           on_cancellation=on_cancellation, on_crashed=on_crashed)
        self.on_commit_hooks: list[Callable[..., Any]] = []
        self.on_rollback_hooks: list[Callable[..., Any]] = []
        self.task_key = f"{module_label(fn)}.{fn.__qualname__}"
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = signature
        parameters = signature.parameters.values()
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
            "timeout_seconds": self.timeout_seconds, "cache_policy": self.cache_policy or NO_CACHE,
            "cache_key_fn": self.cache_key_fn, "cache_expiration": self.cache_expiration,
            "refresh_cache": self.refresh_cache, "persist_result": self.persist_result,
            "task_run_name": self.task_run_name, "log_prints": self.log_prints,
            **{kind: list(hooks) for kind, hooks in self.hooks.by_kind.items()},
        }
        clone = Task(self.fn, **{**current, **options})
        clone.on_commit_hooks, clone.on_rollback_hooks = list(self.on_commit_hooks), list(self.on_rollback_hooks)
        return clone

    def on_completion(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_completion", hook)

    def on_failure(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_failure", hook)

    def on_commit(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Run `hook(transaction)` when the transaction this task's run completed in commits."""
        self.on_commit_hooks.append(hook)
        return hook

    def on_rollback(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Run `hook(transaction)` when the transaction this task's run completed in rolls back."""
        self.on_rollback_hooks.append(hook)
        return hook

    def on_running(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_running", hook)

    def on_cancellation(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_cancellation", hook)

    def on_crashed(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_crashed", hook)

    # -- calling -----------------------------------------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        flow_run = flow_run_var.get()
        if flow_run is None:
            return self.fn(*args, **kwargs)  # outside a flow a task is a plain function call
        flow_run.control.check()
        run = TaskRun(self, flow_run, self.bind(args, kwargs), wait_for)
        if self.is_async:
            return _finish_async(run, return_state)
        return _finish(run_sync(run), return_state, flow_run)

    def submit(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        """Run in the flow's task runner; a future at once (the final state with `return_state`)."""
        flow_run = _require_flow_run(self, "submit")
        flow_run.control.check()
        parameters = self.bind(args, kwargs)
        deferred = bool(wait_for) or needs_waiting(parameters)
        run = TaskRun(self, flow_run, parameters, wait_for, deferred=deferred)
        driver = (lambda: asyncio.run(run_async(run))) if self.is_async else (lambda: run_sync(run))
        inner = flow_run.task_runner.submit(driver)
        flow_run.submitted.append((run, inner))
        future: TaskFuture[R] = TaskFuture(run.task_run_id, inner)
        if return_state:
            future.wait()
            return future.state
        return future

    def map(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None, **kwargs: Any) -> Any:
        """One submitted run per element of the iterable arguments given (`unmapped(x)` passes x
        whole; defaults are never mapped over); a TaskFutureList, or the states with `return_state`."""
        given = self._signature.bind(*args, **kwargs).arguments
        iterables: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in given.items():
            value = _resolved_iterable(value)
            if _is_mappable(value):
                iterables[name] = list(value)
            else:
                static[name] = value.value if isinstance(value, unmapped) else value
        if not iterables:
            raise MappingMissingIterable(
                f"No iterable parameters were received. Parameters for map must include at least one iterable. "
                f"Parameter values: {given}"
            )
        lengths = {name: len(values) for name, values in iterables.items()}
        if len(set(lengths.values())) > 1:
            raise MappingLengthMismatch(f"Received iterable parameters with different lengths. Parameters for map "
                                        f"must all be the same length. Got lengths: {lengths}")
        futures: TaskFutureList[R] = TaskFutureList(
            self.submit(**static, **{name: values[i] for name, values in iterables.items()}, wait_for=wait_for)
            for i in range(next(iter(lengths.values())))
        )
        if return_state:
            futures.wait()
            return [future.state for future in futures]
        return futures

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults applied (`*args` and `**kwargs`
        parameters hold a tuple and a dict)."""
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

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments that call the function with `parameters`."""
        if self._simple:
            return (), parameters
        bound = inspect.BoundArguments(self._signature, dict(parameters))
        return bound.args, bound.kwargs


def _resolved_iterable(value: Any) -> Any:
    """A future or state handed to `.map()` stands for the iterable it produced."""
    if isinstance(value, TaskFuture):
        return value.result()
    if isinstance(value, State):
        return value.resolve()
    return value


def _is_mappable(value: Any) -> bool:
    if isinstance(value, (unmapped, allow_failure, quote, opaque, str, bytes, dict)):
        return False
    return isinstance(value, Iterable)


def _require_flow_run(task_: Task[..., Any], verb: str) -> FlowRunContext:
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError(f"{task_.name}.{verb}() must be called inside a flow run")
    return flow_run


def _finish(state: State, return_state: bool, flow_run: FlowRunContext) -> Any:
    """What a direct task call returns to the flow, unless the flow must stop now."""
    flow_run.control.check()
    return state if return_state else state.resolve()


async def _finish_async(run: TaskRun, return_state: bool) -> Any:
    state = await run_async(run)
    if run.flow_run.control.stopping:
        # In async code a stop unwinds as asyncio does it (gather and task groups expect that).
        raise asyncio.CancelledError(run.flow_run.control.reason)
    return state if return_state else state.resolve()


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Decorate a function as a task: `@task` or `@task(retries=3, ...)`."""
    if fn is not None:
        return Task(fn, **options)
    return lambda decorated: Task(decorated, **options)
