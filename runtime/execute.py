"""Adopt a requested run: execute a `flow-run.Scheduled` run that someone else asked for.

`execute_flow_run(id)` reads the run's stream, waits for its scheduled time, claims it by
appending `flow-run.Pending` with the stream version it read (of two executors racing for one
run exactly one claim is written; the other gets `RunAlreadyClaimed`), loads the flow from the
recorded entrypoint and working directory, and runs it in this process with the recorded
parameters, writing into the run's own stream.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

from ledgerflow.events.errors import ConcurrencyConflict
from ledgerflow.events.model import StoredEvent, utcnow
from ledgerflow.events.runs import (
    FlowRunHistory,
    RunClaim,
    RunLog,
    RunNotDue,
    RunNotFound,
    RunStateConflict,
    claim_flow_runs,
    propose_flow_run_state,
    read_flow_run,
)
from ledgerflow.events.deployments import acquire_concurrency_slot, read_deployment
from ledgerflow.events.states import TERMINAL, StateType
from ledgerflow.events.transitions import RunState
from ledgerflow.runtime import config
from ledgerflow.runtime.entrypoints import EntrypointError, load_entrypoint
from ledgerflow.runtime.flow_engine import AdoptedRun, FlowRun
from ledgerflow.runtime.replays import ReplayError, ReplayOptions, ReplayPlan, plan_replay, request_replay, resume_plan
from ledgerflow.runtime.signals import ParameterValidationError
from ledgerflow.runtime.states import State

if TYPE_CHECKING:
    from ledgerflow.runtime.flows import Flow

__all__ = [
    "Claimer", "ReplayError", "RunAlreadyClaimed", "RunAwaitsConcurrency", "RunNotAdoptable", "RunNotFound",
    "claim_due_runs", "execute_flow_run", "replay",
]

_CLAIMABLE = frozenset({"Scheduled", "Late", "Resuming"})
"""Requested runs waiting for an executor (AwaitingRetry is a live engine's own wait);
`Resuming`: a suspended run that was resumed, executed again from the start."""


class RunNotAdoptable(Exception):
    """The run cannot be executed here: it is not waiting to run, or its flow cannot be loaded."""


class RunAlreadyClaimed(RunNotAdoptable):
    """Another executor claimed the run first."""


class RunAwaitsConcurrency(RunNotAdoptable):
    """Its deployment's concurrency limit is reached: the run stays waiting, untouched."""


Claimer = Callable[[RunClaim, datetime], StoredEvent | None]
"""Claims a waiting run for this process once it is due (`claim_due_runs`, for many runs at
once); returns the claim (its `flow-run.Pending`), or None when this process is to claim it itself."""


def execute_flow_run(
    flow_run_id: str | UUID,
    *,
    wait: bool = True,
    executor: str | None = None,
    chdir: bool = False,
    on_claimed: Callable[[], None] | None = None,
    claimer: Claimer | None = None,
) -> State:
    """Execute the requested (Scheduled) run `flow_run_id` in this process; its final state.

    With `wait=False` a run whose scheduled time has not come is refused instead of waited for.
    With `chdir=True` (a process of its own) the run works in its recorded working directory.
    `on_claimed` is called once the claim is written (a worker reports it). `claimer`: who
    claims the run for this process once it is due, instead of this process (see `Claimer`).
    Raises RunNotFound, RunAlreadyClaimed, RunNotAdoptable.
    """
    runtime = config.current()
    run_id = UUID(str(flow_run_id)) if not isinstance(flow_run_id, UUID) else flow_run_id
    # Load the flow before the claim, which may wait for the scheduled time: when it comes, the
    # run starts at once (a runner that prefetches runs due soon relies on this).
    read = read_flow_run(runtime.log, run_id)
    ahead = _request_of(read)
    prepared = _prepare(ahead, chdir)
    history, claim = _claim(runtime, read, wait, executor, claimer)
    claimed = claim.stream_position
    # What stops the run (a cancel) is written into its stream after the claim: the control
    # watcher reads on from there, without asking the log for its head (at the due moment of a
    # hundred runs, a hundred requests to the server).
    runtime.watcher.start_after(claim.cursor)
    if on_claimed is not None:
        on_claimed()
    created = _request_of(history)
    if any(created.get(k) != ahead.get(k) for k in ("entrypoint", "working_dir", "parameters")):
        prepared = _prepare(created, chdir)  # the request changed while we waited
    if isinstance(prepared, str):
        _give_back(runtime, history, claimed, prepared)
    flow_, parameters = prepared
    adopted = AdoptedRun(
        flow_run_id=run_id,
        run_name=str(created.get("run_name") or f"{flow_.name}-{run_id.hex[-8:]}"),
        version=claimed,
        state=RunState.named("Pending"),
        root_flow_run_id=UUID(str(created.get("root_flow_run_id") or run_id)),
        scheduled_time=_scheduled_time(history),
        deployment_id=created.get("deployment_id"),
    )
    replay_of = created.get("replay_of")
    if any(e.type == "flow-run.Resuming" for e in history.events):
        # A resumed suspension: the run starts again and reuses what it completed before.
        plan: ReplayPlan | None = resume_plan(runtime.log, str(run_id))
    elif replay_of:
        plan = plan_replay(runtime.log, replay_of, ReplayOptions.of(created.get("replay_options")))
    else:
        plan = None
    run = FlowRun(flow_, parameters, adopted=adopted, record_created=not history.created, replay=plan)
    if flow_.is_async:
        import asyncio

        async def drive() -> State:
            with run.guarded():
                return await run.drive_async()

        return asyncio.run(drive())
    with run.guarded():
        return run.drive_sync()


def _prepare(request: dict[str, Any], chdir: bool) -> tuple[Flow[..., Any], dict[str, Any]] | str:
    """The flow and parameters of a request, or why they cannot be had."""
    from ledgerflow.runtime.flows import Flow

    entrypoint = request.get("entrypoint")
    if not entrypoint:
        return "the run records no entrypoint to load its flow from"
    working_dir = request.get("working_dir")
    if chdir and working_dir:
        try:
            os.chdir(working_dir)
        except OSError as exc:
            return f"cannot work in {working_dir}: {exc}"
    try:
        flow_ = load_entrypoint(entrypoint, working_dir)
    except EntrypointError as exc:
        return str(exc)
    if not isinstance(flow_, Flow):
        return f"{entrypoint} is a {type(flow_).__name__}, not a @flow"
    try:
        return flow_, flow_.validated((), dict(request.get("parameters") or {}))
    except ParameterValidationError as exc:
        return str(exc)


def _scheduled_time(history: FlowRunHistory) -> datetime | None:
    scheduled = next((e for e in reversed(history.events) if e.type == "flow-run.Scheduled"), None)
    when = scheduled.data.get("scheduled_time") if scheduled is not None else None
    return datetime.fromisoformat(when) if when else None


_REQUEST_FIELDS = ("entrypoint", "working_dir", "parameters", "replay_of", "deployment_id", "work_pool")


def _request_of(history: FlowRunHistory) -> dict[str, Any]:
    """What to run: the run's `flow-run.created`, with what its latest `flow-run.Scheduled`
    says about the request (a scheduler or API client may put it there alone)."""
    request = dict(history.created)
    scheduled = next((e for e in reversed(history.events) if e.type == "flow-run.Scheduled"), None)
    if scheduled is not None:
        request.update({k: scheduled.data[k] for k in _REQUEST_FIELDS if scheduled.data.get(k) is not None})
    return request


def _claim(
    runtime: config.Runtime, read: FlowRunHistory, wait: bool, executor: str | None, claimer: Claimer | None,
) -> tuple[FlowRunHistory, StoredEvent]:
    """Move the run Scheduled -> Pending on the version we decided on (one versioned append:
    of two executors exactly one wins); the run's history and the claim (its Pending event).
    `read`: the run as just read, decided on first (the versioned append catches any change).
    A run that waits for its time is handed to `claimer`, if any, to be claimed when due."""
    who = executor or _executor()
    run_id = UUID(read.flow_run_id)
    waiting_since: int | None = None
    known: FlowRunHistory | None = read
    while True:
        history, known = known or read_flow_run(runtime.log, run_id), None
        state = history.state
        if state is None or state.name not in _CLAIMABLE:
            raise _lost_or_not_claimable(run_id, history, waiting_since)
        waiting_since = waiting_since or history.version
        if state.scheduled_time is None or state.scheduled_time <= utcnow():
            _hold_concurrency_slot(runtime, run_id, history)
        try:
            claimed = propose_flow_run_state(
                runtime.log, run_id, "Pending", message=f"claimed by {who}", data={"executor": who}, actor="executor",
                known=history,
            )
        except RunNotDue as due:
            if not wait:
                raise RunNotAdoptable(str(due)) from None
            if claimer is not None:
                claim = RunClaim.of(history, who, _request_of(history).get("deployment_id"))
                by_claimer = claimer(claim, due.until)
                if by_claimer is not None:
                    if by_claimer.stream_position != history.version + 1:
                        history = read_flow_run(runtime.log, run_id)
                    return history, by_claimer
            _sleep_until(due.until)
            # Claim on what we read: at the due time a hundred runs claim at once, and the
            # versioned append reads the run again only if it moved meanwhile.
            known = history
            continue
        except RunStateConflict:
            raise _lost_or_not_claimable(run_id, read_flow_run(runtime.log, run_id), waiting_since) from None
        if claimed.stream_position != history.version + 1:
            history = read_flow_run(runtime.log, run_id)  # someone wrote between our read and the claim
        return history, claimed


def claim_due_runs(log: RunLog, claims: Sequence[RunClaim]) -> dict[str, StoredEvent]:
    """Claim for their executors the runs of `claims` that are due and take no concurrency
    slot, in one append; run id -> its claim. The others (and all, when one run moved since
    its executor read it) are left to their executors to claim themselves."""
    limited: dict[str, bool] = {}
    for deployment_id in {c.deployment_id for c in claims if c.deployment_id}:
        deployment = read_deployment(log, deployment_id)
        limited[deployment_id] = deployment is not None and deployment.spec.concurrency_limit is not None
    free = [c for c in claims if not (c.deployment_id and limited[c.deployment_id])]
    if not free:
        return {}
    try:
        claimed = claim_flow_runs(log, free)
    except ConcurrencyConflict:
        return {}
    return {c.flow_run_id: event for c, event in zip(free, claimed, strict=True)}


def _hold_concurrency_slot(runtime: config.Runtime, run_id: UUID, history: FlowRunHistory) -> None:
    """A run of a deployment with a concurrency limit takes a slot before it is claimed; when
    every slot is held by a running run it is not claimed (RunAwaitsConcurrency)."""
    deployment_id = _request_of(history).get("deployment_id")
    if not deployment_id:
        return
    deployment = read_deployment(runtime.log, str(deployment_id))
    limit = deployment.spec.concurrency_limit if deployment is not None else None
    if limit is None:
        return

    def active(holder: str) -> bool:
        try:
            state = read_flow_run(runtime.log, holder).state
        except RunNotFound:
            return False
        return state is not None and state.type not in TERMINAL

    if not acquire_concurrency_slot(runtime.log, str(deployment_id), str(run_id), limit, active):
        raise RunAwaitsConcurrency(
            f"flow run {run_id} waits: deployment {deployment.name if deployment else deployment_id} already runs "
            f"{limit} run(s), its concurrency limit"
        )


def _lost_or_not_claimable(run_id: UUID, history: FlowRunHistory, waiting_since: int | None) -> RunNotAdoptable:
    """Someone else's claim since we found the run waiting means we lost the race."""
    if waiting_since is not None and any(e.type == "flow-run.Pending" for e in history.events[waiting_since:]):
        return RunAlreadyClaimed(f"flow run {run_id} was claimed by another executor first")
    return _not_claimable(run_id, history.state)


def _not_claimable(run_id: UUID, state: RunState | None) -> RunNotAdoptable:
    if state is not None and state.type in (StateType.PENDING, StateType.RUNNING):
        return RunAlreadyClaimed(f"flow run {run_id} is {state.name}: another executor claimed it")
    what = state.name if state else "not started"
    return RunNotAdoptable(f"flow run {run_id} is {what}, not Scheduled: nothing to execute here")


def _sleep_until(when: datetime) -> None:
    import time

    time.sleep(max(0.0, min((when - utcnow()).total_seconds(), 60.0)))


def _executor() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _give_back(runtime: config.Runtime, history: FlowRunHistory, version: int, reason: str) -> NoReturn:
    """The claim was ours but the flow cannot run: the run fails with the reason, visibly."""
    try:
        propose_flow_run_state(
            runtime.log, history.flow_run_id, "Failed", message=reason, actor="executor",
            data={"error": {"type": "RunNotAdoptable", "message": reason}},
        )
    except RunStateConflict:
        pass  # someone else ended the run meanwhile (cancelled it): their word stands
    raise RunNotAdoptable(reason)



def replay(
    run_id: str | UUID,
    *,
    parameters: Mapping[str, Any] | None = None,
    from_task: str | None = None,
    no_reuse: Sequence[str] = (),
    detach: bool = False,
) -> State | str:
    """Replay the finished flow run `run_id` from its last successful task (runtime/replays.py).

    Runs the replay here and returns its final state; with `detach=True` only requests it (the
    server executes it) and returns the new run's id. Raises ReplayError.
    """
    runtime = config.current()
    options = ReplayOptions(from_task, tuple(no_reuse))
    new_id = request_replay(runtime.log, str(run_id), parameters=parameters, options=options, actor="replay")
    if detach:
        return new_id
    return execute_flow_run(new_id)
