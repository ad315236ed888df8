"""Write-side use cases on flow runs: what the API, the runtime, automations, the scheduler
and workers do to a run from outside its engine. Every change goes through the one rule book,
`events.transitions.decide`, and is appended with the stream version it was decided on, so two
writers racing on one run never both win: the loser re-reads and decides again.

- `request_flow_run`: a run asked for without being run (`flow-run.created` +
  `flow-run.Scheduled`, naming an entrypoint); a runner or worker adopts it later.
- `propose_flow_run_state`: move a run to a named state if the rules allow it.
- `claim_flow_runs`: move runs that their executors found claimable to Pending, in one append.
- `cancel_flow_run`: `Cancelled` if it has not started, else `Cancelling` (its engine ends it).
- `resume_flow_run`: a paused run goes on (`Running`, its blocked engine continues) or a
  suspended one is asked for again (`Resuming`, an executor runs it anew), with the input it
  waited for, checked against the JSON schema its pause recorded.
- `suspend_flow_run`: a run that has not started yet is `Suspended` until resumed.
- `read_flow_run`: a run's events and its current state.
- `mark_late`: `Late` for a requested run not started within the grace period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import jsonschema_rs
import orjson

from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import NO_STREAM, EventMeta, ExpectedVersion, NewEvent, StoredEvent, StreamAppend, new_id, utcnow
from ledgerflow.events.payloads import FlowRunCreated, StateChanged, flow_run_stream
from ledgerflow.events.states import STATE_NAMES, StateType, state_event_type
from ledgerflow.events.transitions import Accepted, Delayed, RunState, decide, fold

__all__ = [
    "PAUSE_TYPES",
    "replay_request",
    "FlowRunHistory",
    "InvalidRunInput",
    "PauseExpired",
    "RunClaim",
    "RunLog",
    "RunNotDue",
    "RunNotFound",
    "RunStateConflict",
    "cancel_flow_run",
    "claim_flow_runs",
    "flow_run_request",
    "mark_late",
    "last_pause",
    "propose_flow_run_state",
    "read_flow_run",
    "request_flow_run",
    "resume_flow_run",
    "suspend_flow_run",
]

_ATTEMPTS = 20
_NOT_STARTED = (StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED)


class RunNotFound(LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunStateConflict(Exception):
    """The run's state does not allow the change (it already finished, is cancelling, ...)."""


class RunNotDue(RunStateConflict):
    """The run waits for its scheduled time; the change is allowed from `until` on."""

    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class PauseExpired(RunStateConflict):
    """The run's pause timed out before it was resumed: the run is Failed now."""


class InvalidRunInput(InvalidEvent):
    """The input given to resume a run does not fit what the run waits for."""


PAUSE_TYPES = ("flow-run.Paused", "flow-run.Suspended")


class RunLog(Protocol):
    """What these use cases need of the log: the event store, or the API server's client."""

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]: ...

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]: ...


@dataclass(frozen=True)
class FlowRunHistory:
    flow_run_id: str
    events: list[StoredEvent]
    state: RunState | None
    created: dict[str, Any]
    """The data of the run's `flow-run.created` (empty if the stream has none)."""

    @property
    def version(self) -> int:
        return self.events[-1].stream_position if self.events else 0


def read_flow_run(log: RunLog, flow_run_id: str | UUID) -> FlowRunHistory:
    """The run's stream and its state; RunNotFound when the stream is empty."""
    run_id = str(flow_run_id)
    history = log.read_stream(flow_run_stream(run_id))
    if not history:
        raise RunNotFound(run_id)
    created = next((e.data for e in history if e.type == "flow-run.created"), {})
    state = fold(e for e in history if e.type.startswith("flow-run."))
    return FlowRunHistory(run_id, history, state, created)


def propose_flow_run_state(
    log: RunLog,
    flow_run_id: str | UUID,
    name: str,
    *,
    message: str | None = None,
    data: Mapping[str, Any] | None = None,
    actor: str | None = None,
    force: bool = False,
    ignore_schedule: bool = False,
    event_id: UUID | None = None,
    now: datetime | None = None,
    known: FlowRunHistory | None = None,
) -> StoredEvent:
    """Append `flow-run.<name>` if `decide` accepts it on the run's current state.

    `force` skips the rules (an operator's override; it is still one versioned append);
    `ignore_schedule` accepts a move that would otherwise wait for the run's scheduled time.
    `event_id` makes the proposal idempotent: proposing it again returns the stored event.
    `known`: the run's history as the caller just read it, decided on instead of reading it
    again (the append carries its version: if the run moved since, it is read and decided anew).
    Raises RunNotFound, RunStateConflict (refused), RunNotDue (allowed only later).
    """
    if name not in STATE_NAMES:
        raise InvalidEvent(f"unknown state name {name!r}: use one of {', '.join(STATE_NAMES)}")
    run_id = str(flow_run_id)
    event_id = event_id or new_id()
    for attempt in range(_ATTEMPTS):
        history = known if known is not None and attempt == 0 else read_flow_run(log, run_id)
        mine = next((e for e in history.events if e.id == event_id), None)
        if mine is not None:
            return mine
        scheduled = (data or {}).get("scheduled_time")
        expires = (data or {}).get("pause_expiration")
        proposed = RunState(STATE_NAMES[name], name, datetime.fromisoformat(scheduled) if scheduled else None,
                            datetime.fromisoformat(expires) if expires else None)
        decision = Accepted(proposed) if force else decide(history.state, proposed, now or utcnow())
        if isinstance(decision, Delayed) and ignore_schedule:
            decision = Accepted(proposed)
        if isinstance(decision, Delayed):
            raise RunNotDue(f"flow run {run_id} is scheduled for {decision.until.isoformat()}; it cannot be {name} before then",
                            decision.until)
        if not isinstance(decision, Accepted):
            raise RunStateConflict(f"flow run {run_id} cannot become {name}: {decision.reason}")
        event = _state_event(run_id, name, message, data, actor, _root(history), event_id)
        try:
            return log.append_streams([StreamAppend(flow_run_stream(run_id), [event], history.version)])[0]
        except ConcurrencyConflict:
            continue  # another writer moved the run: decide again on what it wrote
    raise RunStateConflict(f"flow run {run_id} kept changing under {_ATTEMPTS} attempts to make it {name}")


def _state_event(
    run_id: str, name: str, message: str | None, data: Mapping[str, Any] | None, actor: str | None,
    root: UUID | None, event_id: UUID,
) -> NewEvent:
    payload = StateChanged(flow_run_id=run_id, state_type=STATE_NAMES[name], state_name=name, message=message).as_data()
    payload.update(data or {})
    return NewEvent(type=state_event_type("flow-run", name), data=payload, id=event_id,
                    meta=EventMeta(actor=actor, correlation_id=root))


@dataclass(frozen=True)
class RunClaim:
    """A requested run its executor read claimable (Scheduled, Late or Resuming) at stream
    `version`, to move to Pending for it once due."""

    flow_run_id: str
    version: int
    executor: str
    root_flow_run_id: UUID | None
    deployment_id: str | None

    @classmethod
    def of(cls, history: FlowRunHistory, executor: str, deployment_id: str | None) -> RunClaim:
        return cls(history.flow_run_id, history.version, executor, _root(history), deployment_id)


def claim_flow_runs(log: RunLog, claims: Sequence[RunClaim]) -> list[StoredEvent]:
    """Claim every run of `claims` in one append, each on the version its executor read: the
    Pending events in order, or ConcurrencyConflict with none written (a run moved since).
    The events are those `propose_flow_run_state` writes when an executor claims a run itself."""
    return log.append_streams([
        StreamAppend(flow_run_stream(claim.flow_run_id), [_state_event(
            claim.flow_run_id, "Pending", f"claimed by {claim.executor}", {"executor": claim.executor}, "executor",
            claim.root_flow_run_id, new_id(),
        )], claim.version)
        for claim in claims
    ])


def cancel_flow_run(log: RunLog, flow_run_id: str | UUID, message: str | None = None, actor: str = "api") -> StoredEvent:
    """`Cancelled` for a run that has not started, `Cancelling` for one that runs (its engine,
    or the crash monitor when its process is gone, ends it `Cancelled`)."""
    run_id = str(flow_run_id)
    for _ in range(_ATTEMPTS):
        history = read_flow_run(log, run_id)
        current = history.state
        name = "Cancelled" if current is None or current.type in _NOT_STARTED else "Cancelling"
        try:
            return propose_flow_run_state(
                log, run_id, name, message=message or f"cancelled by {actor}", actor=actor,
                ignore_schedule=True,
            )
        except RunStateConflict:
            again = read_flow_run(log, run_id)
            if again.version == history.version:
                raise
            # It started or ended meanwhile: decide between Cancelled and Cancelling again.
    raise RunStateConflict(f"flow run {run_id} kept changing under {_ATTEMPTS} attempts to cancel it")


def last_pause(history: FlowRunHistory) -> StoredEvent | None:
    """The run's latest `flow-run.Paused` / `flow-run.Suspended` event."""
    return next((e for e in reversed(history.events) if e.type in PAUSE_TYPES), None)


def resume_flow_run(
    log: RunLog,
    flow_run_id: str | UUID,
    run_input: Mapping[str, Any] | None = None,
    *,
    actor: str = "api",
    now: datetime | None = None,
) -> StoredEvent:
    """Resume a paused run: `Running` when its engine waits in `pause_flow_run` (it goes on),
    `Resuming` when it was suspended (its process ended; an executor runs it again, reusing
    the task results it already has). The resuming event carries the pause's key and the
    input, which must fit the JSON schema the pause recorded (`wait_for_input`).

    Raises RunNotFound, RunStateConflict (not paused), PauseExpired (too late: the run is
    Failed now), InvalidRunInput (input missing, unexpected or invalid).
    """
    run_id = str(flow_run_id)
    for _ in range(_ATTEMPTS):
        history = read_flow_run(log, run_id)
        state = history.state
        if state is None or state.type != StateType.PAUSED:
            raise RunStateConflict(f"flow run {run_id} is {state.name if state else 'not started'}, not paused: nothing to resume")
        moment = now or utcnow()
        pause = last_pause(history)
        pause_data: Mapping[str, Any] = pause.data if pause is not None else {}
        if state.pause_expiration is not None and state.pause_expiration <= moment:
            what = "suspended" if state.name == "Suspended" else "paused"
            try:
                propose_flow_run_state(
                    log, run_id, "Failed", message=f"The flow run was {what} and never resumed.", actor=actor,
                    data={"error": {"type": "PauseExpired", "message": f"the pause expired at {state.pause_expiration.isoformat()}"}},
                )
            except RunStateConflict:
                pass  # someone else ended it meanwhile
            raise PauseExpired(f"flow run {run_id} was {what} until {state.pause_expiration.isoformat()} and never resumed; it is Failed now")
        _check_input(run_id, pause_data, run_input)
        reschedule = bool(pause_data.get("pause_reschedule", True))
        data: dict[str, Any] = {"pause_key": pause_data.get("pause_key")}
        if run_input is not None:
            data["run_input"] = dict(run_input)
        if reschedule:
            data["scheduled_time"] = moment.isoformat()
        before = history.version
        try:
            return propose_flow_run_state(
                log, run_id, "Resuming" if reschedule else "Running", message=f"resumed by {actor}",
                data=data, actor=actor, now=moment, ignore_schedule=True,
            )
        except RunStateConflict:
            if read_flow_run(log, run_id).version == before:
                raise
            # The run changed meanwhile (resumed, cancelled, timed out): look again.
    raise RunStateConflict(f"flow run {run_id} kept changing under {_ATTEMPTS} attempts to resume it")


def _check_input(run_id: str, pause: Mapping[str, Any], run_input: Mapping[str, Any] | None) -> None:
    schema = pause.get("run_input_schema")
    if schema is None:
        if run_input is not None:
            raise InvalidRunInput(f"flow run {run_id} is not waiting for input; resume it without any")
        return
    if run_input is None:
        fields = ", ".join(sorted((schema.get("properties") or {}).keys())) or "a value"
        raise InvalidRunInput(f"flow run {run_id} waits for input ({fields}); resume it with run_input")
    try:
        orjson.dumps(run_input)
    except TypeError as exc:
        raise InvalidRunInput(f"run input must be JSON: {exc}") from None
    errors = [f"{'.'.join(map(str, e.instance_path)) or 'input'}: {e.message}"
              for e in jsonschema_rs.iter_errors(schema, dict(run_input))]
    if errors:
        raise InvalidRunInput(f"invalid input for flow run {run_id}: {'; '.join(errors[:5])}")


def suspend_flow_run(
    log: RunLog,
    flow_run_id: str | UUID,
    *,
    timeout: float | None = 3600,
    key: str | None = None,
    actor: str = "api",
    now: datetime | None = None,
) -> StoredEvent:
    """Suspend a run from outside: `Suspended` until `resume_flow_run`, then executed again
    (reusing the task results it completed). A running run's engine hears of it like of a
    cancel: it starts no more task runs, lets running sync ones finish, and its process ends.
    A subflow run cannot be suspended on its own (suspend the run that called it).
    """
    run_id = str(flow_run_id)
    history = read_flow_run(log, run_id)
    if history.created.get("parent_flow_run_id"):
        raise RunStateConflict(f"flow run {run_id} is a subflow run: suspend the flow run that called it")
    moment = now or utcnow()
    data: dict[str, Any] = {"pause_key": key or str(new_id()), "pause_reschedule": True}
    if timeout is not None:
        data["pause_expiration"] = (moment + timedelta(seconds=timeout)).isoformat()
    return propose_flow_run_state(log, run_id, "Suspended", message=f"suspended by {actor}", data=data,
                                  actor=actor, now=moment, ignore_schedule=True)


def _root(history: FlowRunHistory) -> UUID | None:
    root = history.created.get("root_flow_run_id") or history.flow_run_id
    try:
        return UUID(str(root))
    except ValueError:
        return None


def flow_run_request(
    *,
    flow_name: str,
    entrypoint: str,
    working_dir: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    tags: Sequence[str] = (),
    run_name: str | None = None,
    replay_of: str | None = None,
    deployment_id: str | None = None,
    work_pool: str | None = None,
    flow_run_id: UUID | None = None,
    parent_flow_run_id: str | None = None,
    parent_task_run_id: str | None = None,
    root_flow_run_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    actor: str | None = None,
    expected_version: ExpectedVersion = NO_STREAM,
) -> StreamAppend:
    """The append that `request_flow_run` makes (for callers that batch many requests)."""
    run_id = flow_run_id or new_id()
    values = dict(parameters or {})
    try:
        orjson.dumps(values)
    except TypeError as exc:
        raise InvalidEvent(f"parameters of a requested run must be JSON: {exc}") from None
    root = root_flow_run_id or str(run_id)
    created = FlowRunCreated(
        flow_run_id=str(run_id),
        flow_name=flow_name,
        run_name=run_name or f"{flow_name}-{run_id.hex[-8:]}",
        parameters=values,
        entrypoint=entrypoint,
        working_dir=working_dir,
        tags=list(tags),
        root_flow_run_id=root,
        parent_flow_run_id=parent_flow_run_id,
        parent_task_run_id=parent_task_run_id,
        deployment_id=deployment_id,
        replay_of=replay_of,
        work_pool=work_pool,
        **(extra or {}),
    ).as_data()
    due = scheduled_time or utcnow()
    scheduled = StateChanged(
        flow_run_id=str(run_id), state_type=StateType.SCHEDULED, state_name="Scheduled",
        scheduled_time=due.isoformat(),
    ).as_data()
    try:
        correlation = UUID(root)
    except ValueError:
        correlation = run_id
    meta = EventMeta(correlation_id=correlation, actor=actor)
    events = [
        NewEvent(type="flow-run.created", data=created, id=derived_id("flow-run.created", run_id), meta=meta),
        NewEvent(type="flow-run.Scheduled", data=scheduled, id=derived_id("flow-run.Scheduled", run_id), meta=meta),
    ]
    return StreamAppend(flow_run_stream(run_id), events, expected_version)


def replay_request(created: Mapping[str, Any], replay_of: str, *, parameters: Mapping[str, Any] | None = None,
                   replay_options: Mapping[str, Any]) -> dict[str, Any]:
    """`request_flow_run`'s arguments for a replay of the run whose `flow-run.created` data is
    `created`: its flow, entrypoint, folder, tags and parameters (changed by `parameters`), and
    where it ran (deployment, work pool and queue), so that the same workers pick it up."""
    placement = {name: created[name] for name in ("deployment_name", "work_queue") if created.get(name)}
    return {
        "flow_name": str(created.get("flow_name") or "flow"), "entrypoint": str(created["entrypoint"]),
        "working_dir": created.get("working_dir"), "parameters": {**(created.get("parameters") or {}), **(parameters or {})},
        "tags": created.get("tags") or (), "replay_of": replay_of, "deployment_id": created.get("deployment_id"),
        "work_pool": created.get("work_pool"), "extra": {**placement, "replay_options": dict(replay_options)},
    }


def request_flow_run(log: RunLog, **request: Any) -> StoredEvent:
    """Ask for a run of `entrypoint` without running it: `flow-run.created` then
    `flow-run.Scheduled`, appended to a new stream. Returns the Scheduled event. The keyword
    arguments are those of `flow_run_request` (flow_name, entrypoint, working_dir, parameters,
    scheduled_time, tags, run_name, replay_of, deployment_id, work_pool, flow_run_id, ...).

    Give `flow_run_id` (e.g. `derived_id(deployment, slot)`) to make the request idempotent:
    asking twice for the same id creates one run.
    """
    return log.append_streams([flow_run_request(**request)])[1]


def mark_late(log: RunLog, flow_run_id: str | UUID, scheduled_time: datetime | None = None, *,
              now: datetime | None = None) -> StoredEvent | None:
    """`flow-run.Late` for a run still `Scheduled` past its time (None when it is not: it
    started, or is already Late). Its event id derives from the run, so marking twice writes once."""
    run_id = str(flow_run_id)
    history = read_flow_run(log, run_id)
    state = history.state
    if state is None or state.name != "Scheduled":
        return None
    due = state.scheduled_time or scheduled_time
    data = {"scheduled_time": due.isoformat()} if due is not None else {}
    try:
        return propose_flow_run_state(
            log, run_id, "Late", message="not started within the grace period", data=data, actor="late-runs",
            event_id=derived_id("flow-run.Late", run_id), now=now,
        )
    except RunStateConflict:
        return None
