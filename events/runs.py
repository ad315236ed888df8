"""Write-side use cases on flow runs: what the API, the runtime, automations, the scheduler
and workers do to a run from outside its engine. Every change goes through the one rule book,
`events.transitions.decide`, and is appended with the stream version it was decided on, so two
writers racing on one run never both win: the loser re-reads and decides again.

- `request_flow_run`: a run asked for without being run (`flow-run.created` +
  `flow-run.Scheduled`, naming an entrypoint); a runner or worker adopts it later.
- `propose_flow_run_state`: move a run to a named state if the rules allow it.
- `cancel_flow_run`: `Cancelled` if it has not started, else `Cancelling` (its engine ends it).
- `read_flow_run`: a run's events and its current state.
- `mark_late`: `Late` for a requested run not started within the grace period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import orjson

from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import NO_STREAM, EventMeta, ExpectedVersion, NewEvent, StoredEvent, StreamAppend, new_id, utcnow
from ledgerflow.events.payloads import FlowRunCreated, StateChanged, flow_run_stream
from ledgerflow.events.states import STATE_NAMES, StateType, state_event_type
from ledgerflow.events.transitions import Accepted, Delayed, RunState, decide, fold

__all__ = [
    "FlowRunHistory",
    "RunLog",
    "RunNotDue",
    "RunNotFound",
    "RunStateConflict",
    "cancel_flow_run",
    "flow_run_request",
    "mark_late",
    "propose_flow_run_state",
    "read_flow_run",
    "request_flow_run",
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
) -> StoredEvent:
    """Append `flow-run.<name>` if `decide` accepts it on the run's current state.

    `force` skips the rules (an operator's override; it is still one versioned append);
    `ignore_schedule` accepts a move that would otherwise wait for the run's scheduled time.
    `event_id` makes the proposal idempotent: proposing it again returns the stored event.
    Raises RunNotFound, RunStateConflict (refused), RunNotDue (allowed only later).
    """
    if name not in STATE_NAMES:
        raise InvalidEvent(f"unknown state name {name!r}: use one of {', '.join(STATE_NAMES)}")
    run_id = str(flow_run_id)
    event_id = event_id or new_id()
    for _ in range(_ATTEMPTS):
        history = read_flow_run(log, run_id)
        mine = next((e for e in history.events if e.id == event_id), None)
        if mine is not None:
            return mine
        scheduled = (data or {}).get("scheduled_time")
        proposed = RunState(STATE_NAMES[name], name, datetime.fromisoformat(scheduled) if scheduled else None)
        decision = Accepted(proposed) if force else decide(history.state, proposed, now or utcnow())
        if isinstance(decision, Delayed) and ignore_schedule:
            decision = Accepted(proposed)
        if isinstance(decision, Delayed):
            raise RunNotDue(f"flow run {run_id} is scheduled for {decision.until.isoformat()}; it cannot be {name} before then",
                            decision.until)
        if not isinstance(decision, Accepted):
            raise RunStateConflict(f"flow run {run_id} cannot become {name}: {decision.reason}")
        payload = StateChanged(
            flow_run_id=run_id, state_type=proposed.type, state_name=name, message=message,
        ).as_data()
        payload.update(data or {})
        event = NewEvent(
            type=state_event_type("flow-run", name), data=payload, id=event_id,
            meta=EventMeta(actor=actor, correlation_id=_root(history)),
        )
        try:
            return log.append_streams([StreamAppend(flow_run_stream(run_id), [event], history.version)])[0]
        except ConcurrencyConflict:
            continue  # another writer moved the run: decide again on what it wrote
    raise RunStateConflict(f"flow run {run_id} kept changing under {_ATTEMPTS} attempts to make it {name}")


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
