"""One flow run: its events, its context, its state as the rule book allows it, its outcome.

A flow run writes `flow-run.created` (Pending from then), `flow-run.Running` per attempt and
its outcome, with its task runs, logs and artifacts in between. Every state it writes is first
accepted by `events.transitions.decide` on the run's state as the engine knows it, which
includes what other actors wrote into the stream (runtime/control.py): a refused transition is
not written, and a run told to stop (`Cancelling`) starts no more task runs and ends
`Cancelled`.

A flow called inside another flow is a subflow: a task run in the parent's stream stands for
it, and the child's own stream names that task run. A run requested by someone else (a
`flow-run.Scheduled` event) is adopted rather than created: see runtime/execute.py. When a
flow call returns or raises, everything its run emitted has been committed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledgerflow.events import EventMeta, NewEvent, StoredEvent
from ledgerflow.events.liveness import process_fields, this_process
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.events.transitions import Accepted, Delayed, RunState, admissible, fold
from ledgerflow.runtime import config
from ledgerflow.runtime.context import FlowRunContext, RunInfo, current_tags, flow_run_var, task_run_var
from ledgerflow.runtime.control import FlowRunCancelled, FlowRunControl, run_cancellable
from ledgerflow.runtime.futures import resolve_futures_to_states
from ledgerflow.runtime.hashing import hash_inputs
from ledgerflow.runtime.hooks import run_hooks
from ledgerflow.runtime.logging import get_logger, run_logger, setup_for_runs
from ledgerflow.runtime.rendering import error_info, error_message, json_safe, run_name
from ledgerflow.runtime.replays import ReplayPlan, plan_replay
from ledgerflow.runtime.signals import Abort, Pause
from ledgerflow.runtime.states import State, is_state_iterable, log_name
from ledgerflow.runtime.task_engine import TaskRun, TaskTimeout, call_with_timeout
from ledgerflow.runtime.tasks import Task

if TYPE_CHECKING:
    from ledgerflow.runtime.flows import Flow

__all__ = ["AdoptedRun", "FlowRun", "reuse_subflow"]


@dataclass(frozen=True)
class AdoptedRun:
    """A requested run this process has claimed (runtime/execute.py)."""

    flow_run_id: UUID
    run_name: str
    version: int
    """The stream's version right after the claim."""
    state: RunState
    root_flow_run_id: UUID
    scheduled_time: datetime | None = None
    deployment_id: str | None = None


class FlowRun:
    """One call of a flow (or one adopted requested run)."""

    def __init__(
        self, flow_: Flow[..., Any], parameters: dict[str, Any], adopted: AdoptedRun | None = None,
        *, record_created: bool = True, replay: ReplayPlan | None = None,
    ) -> None:
        """`adopted`: run that requested run instead of creating one; `record_created=False`
        when its stream already has its `flow-run.created`; `replay`: what this run may reuse
        (a subflow of a replaying run finds its own plan)."""
        self.flow = flow_
        self.parent = None if adopted else flow_run_var.get()
        self.runtime = self.parent.runtime if self.parent else config.current()
        self.flow_run_id = adopted.flow_run_id if adopted else new_id()
        self.parameters = parameters
        self.name = adopted.run_name if adopted else run_name(
            flow_.flow_run_name, parameters, f"{flow_.name}-{self.flow_run_id.hex[-8:]}", "flow_run_name"
        )
        self.attempt = 0
        root: UUID | None
        if adopted:
            root = adopted.root_flow_run_id
        else:
            root = self.parent.meta.correlation_id if self.parent else self.flow_run_id
        log_prints = flow_.log_prints if flow_.log_prints is not None else bool(self.parent and self.parent.log_prints)
        self.tags = tuple(sorted(set(flow_.tags) | current_tags())) if current_tags() else flow_.tags
        stream = flow_run_stream(self.flow_run_id)
        self.control = FlowRunControl(stream, adopted.state if adopted else None, self.parent.control if self.parent else None)
        self.context = FlowRunContext(
            flow=flow_,
            flow_run=RunInfo(self.flow_run_id, self.name, parameters, self.tags),
            stream=stream,
            runtime=self.runtime,
            task_runner=flow_.task_runner.fresh(),
            meta=EventMeta(correlation_id=root),
            log_prints=log_prints,
            persist_result=flow_.persist_result,
            control=self.control,
            parent_flow_run_id=str(self.parent.flow_run.id) if self.parent else None,
            scheduled_start_time=(adopted.scheduled_time if adopted else None) or utcnow(),
            deployment_id=adopted.deployment_id if adopted else None,
        )
        self.parent_task: TaskRun | None = None
        self.context.replay = replay if replay is not None else self._subflow_replay()
        setup_for_runs()
        self.runtime.writer.track(stream, adopted.version if adopted else 0, self._resolve)
        self.runtime.watcher.watch(self.control)
        if record_created:
            self._record_created(root, adopted is not None)

    def _record_created(self, root: Any, adopted: bool = False) -> None:
        data: dict[str, Any] = {
            "flow_run_id": str(self.flow_run_id),
            "flow_name": self.flow.name,
            "run_name": self.name,
            "parameters": json_safe(self.parameters),
            "tags": list(self.tags),
            "root_flow_run_id": str(root),
        }
        located = self.flow.entrypoint
        if located is not None:
            data["entrypoint"], data["working_dir"] = located
        if self.flow.version:
            data["flow_version"] = self.flow.version
        if self.context.replay is not None and not adopted:
            data["replay_of"] = self.context.replay.original
        if self.parent is not None:
            self.parent_task = TaskRun(_stand_in(self.flow), self.parent, self.parameters, None, child=str(self.flow_run_id))
            self.parent_task.running()
            data["parent_flow_run_id"] = str(self.parent.flow_run.id)
            data["parent_task_run_id"] = str(self.parent_task.task_run_id)
        self.control.own(self.context.emit("flow-run.created", data))
        if not adopted:
            self.control.state = RunState.named("Pending")

    def _subflow_replay(self) -> ReplayPlan | None:
        """In a replaying parent, a subflow that did not complete in the original is replayed
        against the original subflow run (one that completed was reused whole before this)."""
        parent = self.parent
        if parent is None or parent.replay is None:
            return None
        stand_in = _stand_in(self.flow)
        prior = parent.replay.match(stand_in.task_key, stand_in.name, parent.occurrences[stand_in.task_key],
                                    hash_inputs(self.parameters))
        if prior is None or prior.child_flow_run_id is None:
            return None
        return plan_replay(self.runtime.log, prior.child_flow_run_id, parent.replay.options, cut=parent.replay.cut)

    def _transition(self, name: str, **data: Any) -> bool:
        """Write `flow-run.<name>` if the rule book allows it now (waiting out a delay)."""
        scheduled = data.get("scheduled_time")
        when = datetime.fromisoformat(scheduled) if scheduled else None
        while True:
            decision = self.control.propose(name, utcnow(), when)
            if not isinstance(decision, Delayed):
                break
            if self.control.wait((decision.until - utcnow()).total_seconds()):
                decision = self.control.propose(name, utcnow(), when)
                break
        if not isinstance(decision, Accepted):
            get_logger().debug("flow run %r: %s not written: %s", self.name, name, getattr(decision, "reason", decision))
            return False
        data.update(flow_run_id=str(self.flow_run_id), state_type=STATE_NAMES[name])
        data.setdefault("state_name", name)
        if STATE_NAMES[name] in TERMINAL:
            self.runtime.heartbeats.stop(self.context)
        self.control.own(self.context.emit(f"flow-run.{name}", data))
        return True

    def _resolve(self, others: list[StoredEvent], pending: list[NewEvent]) -> list[NewEvent]:
        """The writer found others' events in our stream: learn them, keep what is still allowed."""
        self.control.observe(others)
        history = self.runtime.log.read_stream(self.context.stream)
        logged = fold(e for e in history if e.type.startswith("flow-run."))
        kept, _ = admissible(logged, pending, utcnow(), "flow-run")
        return kept

    # -- driving ------------------------------------------------------------------------------

    @contextmanager
    def guarded(self) -> Iterator[None]:
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
            self.runtime.watcher.unwatch(self.control)
            self.runtime.heartbeats.stop(self.context)
            try:
                self.runtime.writer.flush()
            finally:
                self.runtime.writer.untrack(self.context.stream)

    def drive_sync(self) -> State:
        while True:
            if not self._running():
                return self._stopped(None)
            try:
                final = self._settle(self._call_sync())
            except BaseException as error:  # noqa: BLE001 - every outcome is recorded
                outcome = self._failed(error)
                if isinstance(outcome, State):
                    return outcome
                self.control.wait(outcome)
                continue
            return self._finish(final)

    async def drive_async(self) -> State:
        while True:
            if not self._running():
                return self._stopped(None)
            try:
                final = self._settle(await run_cancellable(self.control, self._call_async(), self.flow.timeout_seconds))
            except BaseException as raised:  # noqa: BLE001 - every outcome is recorded
                error = raised
                if isinstance(raised, TimeoutError) and self.flow.timeout_seconds is not None:
                    error = TaskTimeout(f"flow run exceeded its timeout of {self.flow.timeout_seconds} seconds")
            else:
                return self._finish(final)
            if self.control.stopping:
                await _let_cancelled_work_end(self.control)
            outcome = self._failed(error)
            if isinstance(outcome, State):
                return outcome
            await _sleep_unless_stopped(self.control, outcome)

    def _running(self) -> bool:
        """Start an attempt, unless the run must stop or the rules refuse it."""
        if self.control.stopping:
            return False
        self.attempt += 1
        self.context.attempt = self.attempt
        name = "Running" if self.attempt == 1 else "Retrying"
        heartbeats = self.runtime.heartbeats
        if not self._transition(name, attempt=self.attempt, **process_fields(this_process(), heartbeats.interval)):
            return False
        heartbeats.start(self.context)
        self._hooks("on_running", State(StateType.RUNNING, name, flow_run_id=self.flow_run_id))
        return True

    def _call_sync(self) -> Any:
        args, kwargs = self.flow.call_arguments(self.parameters)
        return call_with_timeout(self.flow.fn, args, kwargs, self.flow.timeout_seconds, "flow run")

    def _call_async(self) -> Any:
        args, kwargs = self.flow.call_arguments(self.parameters)
        return self.flow.fn(*args, **kwargs)

    def _settle(self, value: Any) -> State:
        """The run's final state from what the flow returned (Prefect's rules), once every
        submitted task run has ended: futures in it are resolved to their states; a state made
        by hand is the outcome as given; a run's state, or a list, tuple or set of states,
        decides by aggregate (all Completed: Completed, any Cancelled: Cancelled, any Paused:
        Paused, else Failed) with the states as the value; anything else is a Completed value."""
        self.context.task_runner.shutdown()
        returned = resolve_futures_to_states(value)
        if isinstance(returned, State) and returned.manual:
            return returned
        if isinstance(returned, State) or is_state_iterable(returned):
            states = [returned] if isinstance(returned, State) else list(returned)
            counts = {kind: sum(s.type == kind for s in states) for kind in StateType}
            if counts[StateType.COMPLETED] == len(states):
                return State(StateType.COMPLETED, message="All states completed.", value=returned)
            for kind, what in ((StateType.CANCELLED, "cancelled"), (StateType.PAUSED, "paused")):
                if counts[kind]:
                    return State(kind, message=f"{counts[kind]}/{len(states)} states {what}.", value=returned)
            failed = counts[StateType.FAILED] + counts[StateType.CRASHED]
            message = (f"{failed}/{len(states)} states failed." if failed
                       else f"{len(states) - sum(s.is_final() for s in states)}/{len(states)} states are not final.")
            return State(StateType.FAILED, message=message, value=returned)
        return State(StateType.COMPLETED, value=returned)

    def _finish(self, outcome: State) -> State:
        """Record the final state the flow's return value gave."""
        if outcome.type == StateType.COMPLETED:
            return self._succeeded(outcome)
        if outcome.type == StateType.CANCELLED:
            return self._stopped(None, message=outcome.message)
        if outcome.type == StateType.PAUSED:
            return self._failed(Pause(outcome.message or "paused"))  # type: ignore[return-value]
        error = outcome._error()  # noqa: SLF001 - the State's own way of naming its failure
        return self._record_failure(log_name(outcome) if outcome.type == StateType.FAILED else "Failed",
                                    error, outcome.message or error_message(error), outcome)

    def _succeeded(self, outcome: State) -> State:
        if self.control.stopping:
            return self._stopped(None)
        value = outcome.data
        data: dict[str, Any] = {"attempt": self.attempt}
        if outcome.message:
            data["message"] = outcome.message
        if outcome.name != log_name(outcome):
            data["state_name"] = outcome.name
        if self.flow.persist_result is not False:
            data["result"] = self.runtime.results.persist(value)
        run_logger(self.context).info("Finished in state %s", outcome.name)
        if not self._transition(log_name(outcome), **data):
            return self._stopped(None)
        state = outcome.copy(state_details=replace(outcome.state_details, flow_run_id=self.flow_run_id))
        if self.parent_task is not None:
            self.parent_task.succeeded(value)
        self._hooks("on_completion", state)
        return state

    def _failed(self, error: BaseException) -> State | float:
        if self.control.stopping or isinstance(error, FlowRunCancelled):
            return self._stopped(error)
        if not isinstance(error, Exception):
            # The process is going: do not wait for submitted runs; those never started crash too.
            self.context.task_runner.shutdown(wait=False)
            for task_run, future in self.context.submitted:
                if future.cancelled():
                    task_run.crashed(error)
            self._transition("Crashed", attempt=self.attempt, message=error_message(error), error=error_info(error))
            state = State(StateType.CRASHED, "Crashed", error_message(error), flow_run_id=self.flow_run_id, exception=error)
            self._hooks("on_crashed", state)
            if self.parent_task is not None:
                self.parent_task.crashed(error)
            raise error
        self.context.task_runner.shutdown()
        if isinstance(error, Pause):
            name = getattr(error, "state_name", "Paused")  # suspend_flow_run() wrote Suspended already
            self._transition(name, attempt=self.attempt, message=str(error))
            if self.parent_task is not None:
                self.parent_task.failed(error)
            return State(StateType.PAUSED, name, str(error), flow_run_id=self.flow_run_id, exception=error)
        name = "TimedOut" if isinstance(error, TaskTimeout) else "Failed"
        if self.attempt <= self.flow.retries and not isinstance(error, Abort):
            due = utcnow() + timedelta(seconds=self.flow.retry_delay_seconds)
            if self._transition("AwaitingRetry", attempt=self.attempt, message=error_message(error),
                                error=error_info(error), scheduled_time=due.isoformat()):
                return float(self.flow.retry_delay_seconds)
        return self._record_failure(name, error, error_message(error))

    def _record_failure(self, name: str, error: BaseException, message: str, returned: State | None = None) -> State:
        run_logger(self.context).error("Finished in state %s: %s", name, message)
        self._transition(name, attempt=self.attempt, message=message, error=error_info(error))
        if returned is not None:  # the flow returned its failed outcome: keep what it returned
            state = returned.copy(state_details=replace(returned.state_details, flow_run_id=self.flow_run_id))
        else:
            state = State(STATE_NAMES[name], name, message, flow_run_id=self.flow_run_id, exception=error)
        if self.parent_task is not None:
            self.parent_task.fail(error, name, hooks=False)
        self._hooks("on_failure", state)
        return state

    def _stopped(self, error: BaseException | None, message: str | None = None) -> State:
        """The run was told to stop (cancelled, or crashed by someone else's verdict): no task
        run starts any more, running sync ones finish their call, the run ends Cancelled."""
        runner = self.context.task_runner
        runner.shutdown(wait=True, cancel_queued=True)
        for task_run, future in self.context.submitted:
            if future.cancelled():
                task_run.cancelled()
        reason = message or self.control.reason or (self.control.parent.reason if self.control.parent else None)
        message = reason or (error_message(error) if error is not None and not isinstance(error, FlowRunCancelled) else "cancelled")
        suspended = self.control.state
        if suspended is not None and suspended.type == StateType.PAUSED:
            # Suspended from outside: the process ends here; resumed, the run is executed again.
            run_logger(self.context).warning("Flow run suspended: %s", message)
            return State(StateType.PAUSED, suspended.name, message, flow_run_id=self.flow_run_id)
        self._transition("Cancelled", attempt=max(self.attempt, 1), message=message)
        logged = self.control.state
        name = logged.name if logged is not None and logged.type in TERMINAL and logged.name != "Cancelled" else "Cancelled"
        run_logger(self.context).warning("Finished in state %s: %s", name, message)
        state = State(STATE_NAMES[name], name, message, flow_run_id=self.flow_run_id)
        if self.parent_task is not None:
            self.parent_task.cancelled(message)
        self._hooks("on_cancellation", state)
        return state

    def _hooks(self, kind: str, state: State) -> None:
        hooks = self.flow.hooks[kind]
        if hooks:
            run_hooks(hooks, self.flow, self.context.flow_run, state, lambda hook: get_logger().exception(
                "hook %s of flow run %r failed", getattr(hook, "__name__", hook), self.name))


def _stand_in(flow_: Flow[..., Any]) -> Task[..., Any]:
    """The task that stands for a subflow call in its parent's stream."""
    return Task(flow_.fn, name=flow_.name, persist_result=False)


def reuse_subflow(flow_: Flow[..., Any], parameters: dict[str, Any]) -> State | None:
    """In a replaying parent, the state of a subflow call that the original completed with
    the same inputs: its stand-in task run is `Reused` and no child run starts. None otherwise."""
    parent = flow_run_var.get()
    if parent is None or parent.replay is None:
        return None
    stand_in = _stand_in(flow_)
    prior = parent.replay.match(stand_in.task_key, stand_in.name, parent.occurrences[stand_in.task_key],
                                hash_inputs(parameters))
    if prior is None or not prior.reusable:
        return None
    return TaskRun(stand_in, parent, parameters, None).begin()


async def _let_cancelled_work_end(control: FlowRunControl) -> None:
    """Async task runs were cancelled: let them record that before the run records its end."""
    unfinished = control.unfinished()
    if unfinished:
        await asyncio.wait(unfinished, timeout=10)


async def _sleep_unless_stopped(control: FlowRunControl, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not control.stopping and (left := deadline - asyncio.get_running_loop().time()) > 0:
        await asyncio.sleep(min(left, 0.05))


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
