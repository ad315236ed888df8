"""`ProcessPoolTaskRunner`: submitted tasks' functions run in worker processes.

Only the call of the task's function crosses the process boundary. The engine of each task
run (its events and states, retries, caching, timeouts, transactions) stays in the flow's
process, on a thread as with the `ThreadPoolTaskRunner`; it sends the worker the function's
module and name and the call's arguments, and gets back the value or the error, together with
everything the call logged, printed (with `log_prints`) or created as artifacts, which the
engine then writes into the run's stream as if the call had run in-process.

So a task's function, its arguments and its return value must be picklable, and the function
must be importable by name in a fresh process: defined at the top level of a module (a
script's flows and tasks work when the script calls them under `if __name__ == "__main__":`).
A task defined inside a function, a lambda or a `task(...)` of a local function is refused at
`submit()` with an error that says so. Workers are spawned (never forked from a process that
runs threads) and live as long as the flow run's task runner.

Direct task calls (`my_task(x)`) run in the flow's process, as with any task runner; inside a
worker, a task's own calls of other tasks are refused (call their `.fn` instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import multiprocessing
import os
import pickle
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from threading import Lock
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from ledgerflow.events import NewEvent
from ledgerflow.runtime.context import FlowRunContext, RunInfo, TaskRunContext, flow_run_var, task_run_var
from ledgerflow.runtime.logging import setup_for_runs
from ledgerflow.runtime.rendering import json_safe
from ledgerflow.runtime.task_runners import ThreadPoolTaskRunner

if TYPE_CHECKING:
    from ledgerflow.runtime.tasks import Task

__all__ = ["NotImportable", "ProcessPoolTaskRunner", "remote_runner"]

_remote: ContextVar[ProcessPoolTaskRunner | None] = ContextVar("ledgerflow_process_pool", default=None)


def remote_runner() -> ProcessPoolTaskRunner | None:
    """The process pool the current task run's function call goes to (None: call it here)."""
    return _remote.get()


class NotImportable(TypeError):
    """A task submitted to a ProcessPoolTaskRunner whose function a worker cannot import."""


class ProcessPoolTaskRunner(ThreadPoolTaskRunner):
    """Submitted task runs call their function in one of `max_workers` worker processes
    (default: the number of CPUs); their engines run on threads of the flow's process."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        self.max_workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._engines = ThreadPoolTaskRunner()
        self._pool: ProcessPoolExecutor | None = None
        self._lock = Lock()

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers})"

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        def engine() -> Any:
            _remote.set(self)  # in the copy of the caller's context this task run runs in
            return fn()

        return self._engines.submit(engine)

    def fresh(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(self.max_workers)

    def shutdown(self, wait: bool = True, cancel_queued: bool = False) -> None:
        self._engines.shutdown(wait=wait, cancel_queued=cancel_queued)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_queued or not wait)

    # -- the engine's side of one call ------------------------------------------------------

    def call(self, task_: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None) -> Any:
        """Call the task's function in a worker with these arguments; what the call logged and
        created is written into the current run; its value is returned or its error raised."""
        from ledgerflow.runtime.task_engine import TaskTimeout

        flow_run = flow_run_var.get()
        task_run = task_run_var.get()
        if flow_run is None or task_run is None:
            raise RuntimeError("ProcessPoolTaskRunner.call() runs inside a task run")
        where = locate(task_)
        # The flow's parameters may not travel (a connection passed to the flow): their JSON view does.
        flow_info = dataclasses.replace(flow_run.flow_run, parameters=json_safe(flow_run.flow_run.parameters))
        info = _CallInfo(flow_info, task_run.task_run, task_run.log_prints, task_.is_async, task_.name)
        future = self._workers().submit(_invoke, where[0], where[1], args, kwargs, info)
        try:
            kind, value, records = future.result(timeout)
        except TimeoutError:
            raise TaskTimeout(f"task run exceeded its timeout of {timeout} seconds") from None
        _forward(flow_run, records)
        if kind == "error":
            raise value
        return value

    async def call_async(self, task_: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await asyncio.to_thread(self.call, task_, args, kwargs, None)

    def _workers(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.max_workers, mp_context=multiprocessing.get_context("spawn"))
            return self._pool


def locate(task_: Task[..., Any]) -> tuple[str, str]:
    """The module and qualified name a worker imports the task's function by; NotImportable
    (saying why) when a fresh process could not find it there."""
    fn = task_.fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    why = None
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        why = "it is defined inside a function (or is a lambda)"
    else:
        try:
            found = _resolve(module, qualname)
        except (ImportError, AttributeError) as exc:
            why = f"{module}:{qualname} cannot be imported ({type(exc).__name__}: {exc})"
        else:
            if found is not task_ and found is not fn and getattr(found, "fn", None) is not fn:
                why = f"{module}:{qualname} names something else"
    if why is not None:
        raise NotImportable(
            f"task {task_.name!r} cannot run in a worker process: {why}. A ProcessPoolTaskRunner's workers "
            "import a task's function by its module and name: define the task at the top level of a module "
            "(in a script, call the flow under `if __name__ == \"__main__\":`)."
        )
    return cast(str, module), qualname


def _resolve(module: str, qualname: str) -> Any:
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def _forward(flow_run: FlowRunContext, records: list[tuple[str, Any, Any]]) -> None:
    for kind, first, second in records:
        if kind == "run":
            flow_run.emit(first, second)
        else:
            flow_run.runtime.writer.emit(first, second)


# -- the worker's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class _CallInfo:
    flow_run: RunInfo
    task_run: RunInfo
    log_prints: bool
    is_async: bool
    task_name: str


class _InWorker:
    """Stands for the run's FlowRunContext in a worker: events are recorded for the engine."""

    def __init__(self, info: _CallInfo) -> None:
        self.flow_run = info.flow_run
        self.flow_run_id = str(info.flow_run.id)
        self.log_prints = info.log_prints
        self.records: list[tuple[str, Any, Any]] = []
        self.control = self
        self.runtime = None

    def emit(self, event_type: str, data: dict[str, Any]) -> UUID:
        self.records.append(("run", event_type, data))
        return uuid.uuid4()

    def send(self, stream: str, event: NewEvent) -> None:
        """An event of another stream (a custom event), appended by the engine."""
        self.records.append(("stream", stream, event))

    def check(self) -> None:
        raise RuntimeError(
            "a task running in a ProcessPoolTaskRunner worker cannot run other tasks: call their .fn(), "
            "or submit them from the flow"
        )

    @property
    def stopping(self) -> bool:
        return False


def _invoke(
    module: str, qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any], info: _CallInfo,
) -> tuple[str, Any, list[Any]]:
    """In the worker: call the function with the run's context standing in; return
    ("value" | "error", what it gave, what it logged and created)."""
    found = _resolve(module, qualname)
    fn = getattr(found, "fn", found)
    setup_for_runs()
    stand_in = _InWorker(info)
    task_stub = found if hasattr(found, "fn") else SimpleNamespace(is_async=info.is_async, name=info.task_name)
    context = TaskRunContext(cast(Any, task_stub), info.task_run, info.flow_run, cast(FlowRunContext, stand_in), info.log_prints)
    flow_token = flow_run_var.set(cast(FlowRunContext, stand_in))
    task_token = task_run_var.set(context)
    try:
        outcome = fn(*args, **kwargs)
        if inspect.isawaitable(outcome):
            awaited = outcome

            async def wait() -> Any:
                return await awaited

            outcome = asyncio.run(wait())
        result: tuple[str, Any] = ("value", outcome)
    except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the engine
        exc.add_note("Traceback in the worker process:\n" + "".join(traceback.format_exception(exc)[1:]))
        result = ("error", exc)
    finally:
        task_run_var.reset(task_token)
        flow_run_var.reset(flow_token)
    try:
        pickle.dumps(result[1])
    except Exception as exc:  # noqa: BLE001 - what cannot travel back is described instead
        what = "return value" if result[0] == "value" else f"error ({type(result[1]).__name__}: {result[1]})"
        result = ("error", TypeError(f"the task's {what} cannot be sent back from its worker process: {exc}"))
    return result[0], result[1], stand_in.records
