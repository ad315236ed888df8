"""`@flow`: a function whose every call is a flow run, one stream `flow-run-<id>` in the log
(the run itself is runtime/flow_engine.py)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, Generic, ParamSpec, TypeVar, overload

from pydantic import ConfigDict, ValidationError, create_model

from ledgerflow.runtime.entrypoints import Entrypoint, entrypoint_of
from ledgerflow.runtime.flow_engine import FlowRun, reuse_subflow
from ledgerflow.runtime.hooks import Hooks
from ledgerflow.runtime.signals import ParameterValidationError
from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner

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
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
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
        self.hooks = Hooks(on_completion=on_completion, on_failure=on_failure, on_crashed=on_crashed,
                           on_cancellation=on_cancellation, on_running=on_running)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = inspect.signature(fn)
        self._model: Any = None

    @cached_property
    def entrypoint(self) -> Entrypoint | None:
        """How another process loads this flow (module:function or file.py:function)."""
        return entrypoint_of(self.fn)

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"

    def with_options(self, **options: Any) -> Flow[P, R]:
        current = {
            "name": self.name, "description": self.description, "version": self.version,
            "flow_run_name": self.flow_run_name, "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds, "timeout_seconds": self.timeout_seconds,
            "validate_parameters": self.validate_parameters, "persist_result": self.persist_result,
            "log_prints": self.log_prints, "task_runner": self.task_runner, "tags": self.tags,
            **{kind: list(hooks) for kind, hooks in self.hooks.by_kind.items()},
        }
        return Flow(self.fn, **{**current, **options})

    def on_completion(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_completion", hook)

    def on_failure(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_failure", hook)

    def on_cancellation(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_cancellation", hook)

    def on_crashed(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_crashed", hook)

    def on_running(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.add("on_running", hook)

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        parameters = self.validated(args, kwargs)
        if self.is_async:
            return _run_async(self, parameters, return_state)
        reused = reuse_subflow(self, parameters)
        if reused is not None:
            return reused if return_state else reused.resolve()
        run = FlowRun(self, parameters)
        with run.guarded():
            state = run.drive_sync()
        return state if return_state else state.resolve()

    def call_arguments(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments that call the function with `parameters`."""
        kinds = self._signature.parameters.values()
        if all(p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY for p in kinds):
            return (), parameters
        bound = inspect.BoundArguments(self._signature, dict(parameters))
        return bound.args, bound.kwargs

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
    reused = reuse_subflow(flow_, parameters)
    if reused is not None:
        return reused if return_state else reused.resolve()
    run = FlowRun(flow_, parameters)
    with run.guarded():
        state = await run.drive_async()
    return state if return_state else state.resolve()


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(**options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Decorate a function as a flow: `@flow` or `@flow(name=..., retries=...)`."""
    if fn is not None:
        return Flow(fn, **options)
    return lambda decorated: Flow(decorated, **options)


