"""One task run: its events and decisions, and the drivers that call the function.

A call is a `TaskRun`: it writes `task-run.created` (Pending from then), consults the replay
plan and the cache, then for each attempt `task-run.Running` and an outcome (`Completed`,
`Failed`, `TimedOut`, `AwaitingRetry`, `Crashed`, `Cancelled`), each accepted by the rule book
first. In a replay the creation waits for the plan's answer: a reused run is one event,
`task-run.Reused` carrying the creation's fields. A submitted run whose inputs hold futures is prepared in the task runner's thread: its
inputs are resolved (waiting for its upstreams) there, so `.submit()` returns at once. An
upstream that did not complete leaves the run `NotReady`, never started (Prefect's rule).
The drivers at the bottom only call the function and wait.
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
from typing import TYPE_CHECKING, Any

from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.states import STATE_NAMES
from ledgerflow.events.transitions import Accepted, Delayed, RunState, decide
from ledgerflow.runtime.context import FlowRunContext, RunInfo, TaskRunContext, current_tags, task_run_var
from ledgerflow.runtime.concurrency import ConcurrencySlotAcquisitionError, WaitAbandoned
from ledgerflow.runtime.control import run_cancellable
from ledgerflow.runtime.hashing import hash_inputs
from ledgerflow.runtime.hooks import run_hooks
from ledgerflow.runtime.inputs import Inputs, hash_view
from ledgerflow.runtime.logging import get_logger, run_logger
from ledgerflow.runtime.rendering import error_info, error_message, json_safe, run_name
from ledgerflow.runtime.replays import Prior
from ledgerflow.runtime.signals import Abort, Fail, Pause
from ledgerflow.runtime.process_pool import remote_runner
from ledgerflow.runtime.states import State, log_name
from ledgerflow.runtime.transactions import join_transaction

if TYPE_CHECKING:
    from ledgerflow.runtime.tasks import Task

__all__ = ["TaskRun", "TaskTimeout", "call_with_timeout", "run_async", "run_sync"]

_SCALARS = (int, float, str, bool, bytes, type(None))
_PENDING = RunState.named("Pending")
NO_SLOTS: list[tuple[str, str]] = []


class TaskTimeout(TimeoutError):
    pass


class TaskRun:
    """The events and decisions of one task call; the drivers below do the calling."""

    def __init__(
        self,
        task_: Task[..., Any],
        flow_run: FlowRunContext,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        child: str | None = None,
        *,
        deferred: bool = False,
    ) -> None:
        """`deferred`: resolve the inputs and record the run later, in the thread that runs it
        (`prepare()`), so that whoever submitted it does not wait for its upstreams."""
        self.task = task_
        self.child = child
        self.flow_run = flow_run
        self.task_run_id = new_id()
        self.task_run_id_text = str(self.task_run_id)
        self.attempt = 0
        self.raw = parameters
        self.wait_for = list(wait_for or ())
        self.occurrence = flow_run.occurrences[task_.task_key]
        flow_run.occurrences[task_.task_key] += 1
        self.tags = tuple(sorted(set(task_.tags) | current_tags())) if current_tags() else task_.tags
        self.cache_key: str | None = None
        self.cache_run_scoped = False
        self.state: RunState | None = None
        self._creation: dict[str, Any] | None = None
        """The `task-run.created` data, once the inputs are resolved."""
        self.recorded = False
        self._started = time.perf_counter()
        if not deferred:
            self.prepare()

    # -- inputs and the created event ---------------------------------------------------------

    def prepare(self) -> None:
        """Resolve the inputs (waiting for upstream runs) and record the run."""
        inputs = Inputs(self.flow_run)
        self.parameters = {name: inputs.resolve(value) for name, value in self.raw.items()}
        for dependency in self.wait_for:
            inputs.resolve(dependency)
        self.upstream = inputs.upstream
        self.upstream_failure = inputs.failure
        self.name = run_name(self.task.task_run_name, self.parameters, f"{self.task.name}-{self.occurrence}", "task_run_name")
        self.info = RunInfo(self.task_run_id, self.name, self.parameters, self.tags)
        self.input_hash = hash_inputs(hash_view(self.raw, self.parameters))
        self._creation = self._created_data(json_safe(self.parameters))
        if self.flow_run.replay is None:
            self._record_created()

    @property
    def prepared(self) -> bool:
        return self._creation is not None

    def ensure_recorded(self) -> None:
        """Record a deferred run that never got to resolve its inputs (the flow stopped first),
        or a replay's run whose creation waited for the plan."""
        if self.recorded:
            return
        if self._creation is None:
            self.parameters, self.upstream, self.upstream_failure = self.raw, [], None
            self.name = f"{self.task.name}-{self.occurrence}"
            self.info = RunInfo(self.task_run_id, self.name, {}, self.tags)
            self.input_hash = None
            self._creation = self._created_data(json_safe({name: repr(value) for name, value in self.raw.items()}))
        self._record_created()

    def _created_data(self, rendered: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_run_id": self.task_run_id_text,
            "flow_run_id": self.flow_run.flow_run_id,
            "task_key": self.task.task_key,
            "task_name": self.task.name,
            "run_name": self.name,
            "occurrence": self.occurrence,
            "input_hash": self.input_hash,
            "upstream": self.upstream,
            "tags": list(self.tags),
            "parameters": rendered,
        }
        if self.child is not None:
            data["child_flow_run_id"] = self.child
        return data

    def _record_created(self) -> None:
        assert self._creation is not None
        self.flow_run.emit("task-run.created", self._creation)
        self.recorded = True
        self.state = _PENDING

    def _emit(self, name: str, **data: Any) -> None:
        data["flow_run_id"] = self.flow_run.flow_run_id
        data["task_run_id"] = self.task_run_id_text
        self.flow_run.emit(f"task-run.{name}", data)

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
        data.setdefault("state_type", proposed.type)
        data.setdefault("state_name", name)
        self._emit(name, **data)
        return True

    # -- before the first call ----------------------------------------------------------------

    def begin(self) -> State | None:
        """A final state if the run ends before calling the function (the flow must stop, an
        upstream did not complete, a replay or the cache has the result)."""
        if self.flow_run.control.stopping:
            return self.cancelled()
        replay = self.flow_run.replay
        if replay is not None:
            if self.upstream_failure is None:
                reused = self._reuse(replay.match(self.task.task_key, self.task.name, self.occurrence, self.input_hash))
                if reused is not None:
                    return reused
            self.ensure_recorded()
        if self.upstream_failure is not None:
            return self._not_ready(self.upstream_failure)
        return self._from_cache()

    def _not_ready(self, reason: str) -> State:
        self._transition("NotReady", message=reason)
        run_logger(self.flow_run, self.info).warning("Task run not started: %s", reason)
        return self._state("NotReady", message=reason)

    def _reuse(self, prior: Prior | None) -> State | None:
        """Take the original run's result instead of running (replay); None to run for real."""
        if prior is None or not prior.reusable:
            return None
        assert prior.result is not None
        try:
            value = self.flow_run.runtime.results.load_ref(prior.result)
        except (FileNotFoundError, LookupError) as exc:
            self.ensure_recorded()
            run_logger(self.flow_run, self.info).warning(
                "Cannot reuse the result of task run %s (%s): running it again", prior.producer, exc
            )
            return None
        original = self.flow_run.replay.original if self.flow_run.replay else "?"
        assert self._creation is not None
        # Pending -> Reused as one event: the creation's fields ride on the state change.
        self.state = _PENDING
        self.recorded = self._transition("Reused", **self._creation, cached_from=prior.producer,
                                         result=dict(prior.result), message=f"reused from flow run {original}")
        self._produced(value)
        return self._completed(value, "Reused")

    def _persists(self) -> bool:
        persist = self.task.persist_result if self.task.persist_result is not None else self.flow_run.persist_result
        return persist is not False

    def _from_cache(self) -> State | None:
        key = self._compute_cache_key()
        if key is None:
            return None
        self.cache_key = key
        if self.task.refresh_cache:
            return None
        index = self.flow_run.run_cache if self.cache_run_scoped else self.flow_run.runtime.cache
        record = index.get(key)
        if record is None:
            return None
        try:
            value = self.flow_run.runtime.results.load_ref(record["result"])
        except (FileNotFoundError, LookupError):
            return None  # the stored result is gone: run for real
        self._transition("Cached", cache_key=key, cached_from=record["task_run_id"], result=record["result"])
        self._produced(value)
        return self._completed(value, "Cached")

    def _compute_cache_key(self) -> str | None:
        if not self._persists():
            return None
        if self.task.cache_key_fn is not None:
            return self.task.cache_key_fn(self.context(), self.parameters)
        policy = self.task.cache_policy
        if policy is None:
            return None
        self.cache_run_scoped = policy.run_scoped
        key = policy.compute_key(self.context(), hash_view(self.raw, self.parameters),
                                 self.flow_run.flow_run.parameters, input_hash=self.input_hash)
        # Scoped by task: two tasks called with the same inputs must not take each other's
        # results (Prefect's INPUTS alone would).
        return None if key is None else f"{self.task.task_key}:{key}"

    def _produced(self, value: Any) -> None:
        """Remember that `value` came from this run, for the lineage of whatever it feeds."""
        if not isinstance(value, _SCALARS):
            self.flow_run.produced_by[id(value)] = (self.task_run_id, value)

    def context(self) -> TaskRunContext:
        log_prints = self.task.log_prints if self.task.log_prints is not None else self.flow_run.log_prints
        info = RunInfo(self.task_run_id, self.name, self.parameters, self.tags, self.attempt or 1)
        return TaskRunContext(self.task, info, self.flow_run.flow_run, self.flow_run, log_prints)

    # -- concurrency limits of its tags ---------------------------------------------------------

    def take_slots(self) -> list[tuple[str, str]] | State:
        """A slot of each of its tags' limits before an attempt (waiting for them), or the
        state the run ends in instead (its flow run was cancelled, a limit can never admit it)."""
        if not self.tags:
            return NO_SLOTS
        slots = self.flow_run.runtime.slots
        try:
            return slots.hold_tags(self.tags, f"task run {self.name}", lambda: self.flow_run.control.stopping)
        except WaitAbandoned:
            return self.cancelled()
        except ConcurrencySlotAcquisitionError as error:
            return self.fail(error, "Failed", hooks=True)

    def give_back(self, held: list[tuple[str, str]]) -> None:
        if held:
            self.flow_run.runtime.slots.release_all(held)

    # -- attempts and outcomes ----------------------------------------------------------------

    def running(self) -> None:
        self.ensure_recorded()  # a replay's run (a subflow's stand-in) may not be yet
        self.attempt += 1
        name = "Running" if self.attempt == 1 else "Retrying"
        self._transition(name, attempt=self.attempt)
        self._hooks("on_running", self._state(name))

    def succeeded(self, value: Any) -> State:
        if isinstance(value, State):  # the task returned a state: it decides the run's outcome
            if value.is_failed() or value.is_crashed() or value.is_cancelled():
                return self.fail(value.exception or Fail(value.message or value.name), log_name(value), hooks=True)
            value = value.data
        result = self.flow_run.runtime.results.persist(value) if self._persists() else None
        data: dict[str, Any] = {"attempt": self.attempt}
        if result is not None:
            data["result"] = result
        if self.cache_key:
            data["cache_key"] = self.cache_key
            if result is not None and result["persisted"]:
                index = self.flow_run.run_cache if self.cache_run_scoped else self.flow_run.runtime.cache
                index.put(self.cache_key, self.task_run_id_text, result, self.task.cache_expiration)
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
        self.ensure_recorded()
        if self._transition("Crashed", attempt=self.attempt, message=f"{type(error).__name__}", error=error_info(error)):
            self._hooks("on_crashed", self._state("Crashed", message=type(error).__name__, exception=error))

    def cancelled(self, message: str | None = None) -> State:
        """The run ends without (another) call: its flow run was told to stop."""
        self.ensure_recorded()
        message = message or self.flow_run.control.reason or "the flow run was cancelled"
        self._transition("Cancelled", attempt=max(self.attempt, 1), message=message)
        state = self._state("Cancelled", message=message)
        self._hooks("on_cancellation", state)
        return state

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
            self._hooks("on_failure", state)
        return state

    def _paused(self, pause: Pause) -> State:
        self._transition("Paused", attempt=max(self.attempt, 1), message=str(pause))
        return self._state("Paused", exception=pause, message=str(pause))

    def _completed(self, value: Any, name: str) -> State:
        state = self._state(name, value=value)
        self._hooks("on_completion", state)
        return state

    def _state(self, name: str, **kwargs: Any) -> State:
        return State(STATE_NAMES[name], name, flow_run_id=self.flow_run.flow_run.id, task_run_id=self.task_run_id, **kwargs)

    def _hooks(self, kind: str, state: State) -> None:
        hooks = self.task.hooks[kind]
        if hooks:
            run_hooks(hooks, self.task, self.info, state, lambda hook: get_logger().exception(
                "hook %s of task run %r failed", getattr(hook, "__name__", hook), self.name))


# -- drivers ------------------------------------------------------------------------------------


def run_sync(run: TaskRun) -> State:
    if not run.prepared:
        run.prepare()
    final = run.begin()
    if final is not None:
        return final
    args, kwargs = run.task.call_arguments(run.parameters)
    while True:
        held = run.take_slots()
        if isinstance(held, State):
            return held
        try:
            outcome = _attempt_sync(run, args, kwargs)
        finally:
            run.give_back(held)
        if isinstance(outcome, State):
            return outcome
        if run.flow_run.control.wait(outcome):
            return run.cancelled()


def _attempt_sync(run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State | float:
    """One call: its final state, or the delay before the next attempt."""
    run.running()
    token = task_run_var.set(run.context())
    try:
        remote = remote_runner()  # a ProcessPoolTaskRunner: the call runs in a worker process
        if remote is not None:
            value = remote.call(run.task, args, kwargs, run.task.timeout_seconds)
        else:
            value = call_with_timeout(run.task.fn, args, kwargs, run.task.timeout_seconds, "task run")
    except BaseException as error:  # noqa: BLE001 - every outcome is recorded
        task_run_var.reset(token)
        return run.failed(error)
    task_run_var.reset(token)
    return run.succeeded(value)


def call_with_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None, what: str
) -> Any:
    """Call `fn`; past `timeout` seconds raise TaskTimeout (the call is left to finish alone)."""
    if timeout is None:
        return fn(*args, **kwargs)
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def call() -> None:
        try:
            outcome["value"] = context.run(fn, *args, **kwargs)
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
    with run.flow_run.control.recording_task_run():
        return await _run_async(run)


async def _run_async(run: TaskRun) -> State:
    if not run.prepared:
        run.prepare()
    final = run.begin()
    if final is not None:
        return final
    control = run.flow_run.control
    args, kwargs = run.task.call_arguments(run.parameters)
    while True:
        held = await asyncio.to_thread(run.take_slots) if run.tags else NO_SLOTS
        if isinstance(held, State):
            return held
        try:
            outcome = await _attempt_async(run, args, kwargs)
        finally:
            if held:
                await asyncio.to_thread(run.give_back, held)
        if isinstance(outcome, State):
            return outcome
        try:
            await run_cancellable(control, asyncio.sleep(outcome))
        except asyncio.CancelledError:
            if not control.stopping:
                raise
            return run.cancelled()


async def _attempt_async(run: TaskRun, args: tuple[Any, ...], kwargs: dict[str, Any]) -> State | float:
    control = run.flow_run.control
    run.running()
    token = task_run_var.set(run.context())
    try:
        remote = remote_runner()
        call = remote.call_async(run.task, args, kwargs) if remote is not None else run.task.fn(*args, **kwargs)
        value = await run_cancellable(control, call, run.task.timeout_seconds) if inspect.iscoroutine(call) else call
    except BaseException as raised:  # noqa: BLE001 - every outcome is recorded
        task_run_var.reset(token)
        if isinstance(raised, asyncio.CancelledError) and control.stopping:
            return run.cancelled()
        error = raised
        if isinstance(raised, TimeoutError) and run.task.timeout_seconds is not None:
            error = TaskTimeout(f"task run exceeded its timeout of {run.task.timeout_seconds} seconds")
        return run.failed(error)
    task_run_var.reset(token)
    return run.succeeded(value)
