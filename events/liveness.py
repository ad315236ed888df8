"""Is a running flow run's process still there? Heartbeats, crash verdicts, and ending dead runs.

A flow run's `flow-run.Running` (and `Retrying`) event records the process that runs it (host,
pid, the process's start time) and how often it beats; while the run is active that process
appends `flow-run.heartbeat` every `LEDGERFLOW_HEARTBEAT_SECONDS`. A run still `Running` or
`Cancelling` is dead when, seen from a process on the same host, its process is gone (or its pid
now belongs to another process: the start time differs), or, seen from another host, its last
heartbeat is more than `STALE_AFTER` intervals old. A dead `Running` run ends `Crashed`, a dead
`Cancelling` one `Cancelled`, and so do its task runs that were running.

`end_if_dead` decides on the run's own stream (not on a projection that may lag) through
`decide`, and appends with the stream version it decided on and ids derived from the run, so
two detectors racing (the server's monitor, a CLI process) write the verdict once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import psutil  # type: ignore[import-untyped]

from ledgerflow.events.errors import ConcurrencyConflict
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import EventMeta, NewEvent, StoredEvent, StreamAppend, utcnow
from ledgerflow.events.payloads import StateChanged, flow_run_stream
from ledgerflow.events.runs import RunLog, RunNotFound, read_flow_run
from ledgerflow.events.states import STATE_NAMES, StateType
from ledgerflow.events.transitions import Accepted, RunState, decide, evolve

__all__ = [
    "HEARTBEAT",
    "LIVE_STATES",
    "STALE_AFTER",
    "LiveRun",
    "ProcessIdentity",
    "Verdict",
    "end_if_dead",
    "live_run",
    "process_alive",
    "process_fields",
    "recorded_process",
    "this_process",
    "verdict",
]

HEARTBEAT = "flow-run.heartbeat"
LIVE_STATES = (StateType.RUNNING, StateType.CANCELLING)
"""The states in which a run has a process that must be alive."""
STALE_AFTER = 1.5
"""Heartbeat intervals without a heartbeat after which a run on another host is dead."""
_SAME_START = 1.0
"""Seconds two readings of one process's start time may differ by (pid reuse takes longer)."""
_ATTEMPTS = 20
_ACTOR = "liveness"


class ProcessIdentity(NamedTuple):
    host: str
    pid: int
    started: datetime


def this_process() -> ProcessIdentity:
    """The calling process (read anew each time: a forked child is another process)."""
    started = psutil.Process().create_time()
    return ProcessIdentity(socket.gethostname(), os.getpid(), datetime.fromtimestamp(started, UTC))


def process_alive(process: ProcessIdentity) -> bool:
    """Whether `process` (of this host) still runs: its pid exists, is not a zombie, and
    belongs to a process started when it was."""
    try:
        found = psutil.Process(process.pid)
        if found.status() == psutil.STATUS_ZOMBIE:
            return False
        started: float = found.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process under that pid: not ours to judge, assume alive
    return abs(started - process.started.timestamp()) < _SAME_START


def process_fields(process: ProcessIdentity, heartbeat_seconds: float) -> dict[str, Any]:
    """What a `Running` event records of the process that runs it."""
    return {
        "host": process.host,
        "pid": process.pid,
        "process_started": process.started.isoformat(),
        "heartbeat_seconds": heartbeat_seconds,
    }


class LiveRun(NamedTuple):
    """A run that should have a live process, as far as the log tells."""

    flow_run_id: str
    state_type: StateType
    process: ProcessIdentity
    heartbeat_seconds: float
    last_heartbeat: datetime


def recorded_process(data: Mapping[str, Any]) -> tuple[ProcessIdentity, float] | None:
    """The process and heartbeat interval a state event's data records (None if it does not)."""
    try:
        process = ProcessIdentity(str(data["host"]), int(data["pid"]), datetime.fromisoformat(data["process_started"]))
        interval = float(data["heartbeat_seconds"])
    except (KeyError, TypeError, ValueError):
        return None
    return (process, interval) if interval > 0 else None


def live_run(flow_run_id: str, events: Iterable[StoredEvent]) -> LiveRun | None:
    """The run's liveness from its stream: None unless it is Running / Cancelling with a
    recorded process."""
    state: RunState | None = None
    recorded: tuple[ProcessIdentity, float] | None = None
    last: datetime | None = None
    for event in events:
        if not event.type.startswith("flow-run."):
            continue
        if event.type == HEARTBEAT:
            last = event.occurred
            continue
        state = evolve(state, event)
        found = recorded_process(event.data) if state is not None and state.type is StateType.RUNNING else None
        if found is not None:
            recorded, last = found, event.occurred
    if state is None or state.type not in LIVE_STATES or recorded is None or last is None:
        return None
    return LiveRun(flow_run_id, state.type, recorded[0], recorded[1], last)


class Verdict(NamedTuple):
    state_name: str
    """`Crashed`, or `Cancelled` for a run that was being cancelled."""
    message: str


def verdict(
    run: LiveRun,
    now: datetime,
    here: ProcessIdentity,
    alive: Callable[[ProcessIdentity], bool] = process_alive,
    *,
    listening_since: datetime | None = None,
    reconnect_allowance: timedelta = timedelta(0),
) -> Verdict | None:
    """Whether `run` is dead as seen from the process `here` at `now` (None: alive, or cannot tell).

    `listening_since`: since when heartbeats could reach the log as the caller knows it (the
    server that receives remote runs' heartbeats was down before). A run not heard from since
    is not held to its silence before, and is given `reconnect_allowance` to find the server
    again; a run heard from since is judged as usual."""
    process = run.process
    if process.host == here.host:
        if process.pid == here.pid or alive(process):
            return None
        reason = f"its process (pid {process.pid} on {process.host}) is gone"
    else:
        heard = run.last_heartbeat
        if listening_since is not None and heard < listening_since:
            heard = listening_since + reconnect_allowance
        silent = now - heard
        if silent <= timedelta(seconds=STALE_AFTER * run.heartbeat_seconds):
            return None
        reason = (f"no heartbeat from {process.host} (pid {process.pid}) for {silent.total_seconds():.1f} s, "
                  f"expected every {run.heartbeat_seconds:g} s")
    if run.state_type is StateType.CANCELLING:
        return Verdict("Cancelled", f"cancelled: {reason}")
    return Verdict("Crashed", f"the flow run crashed: {reason}")


def end_if_dead(
    log: RunLog,
    flow_run_id: str,
    here: ProcessIdentity,
    *,
    now: datetime | None = None,
    alive: Callable[[ProcessIdentity], bool] = process_alive,
    listening_since: datetime | None = None,
    reconnect_allowance: timedelta = timedelta(0),
) -> StoredEvent | None:
    """Append the verdict (`flow-run.Crashed` / `flow-run.Cancelled`, and the same for its
    running task runs) if the run's stream says it is dead; return the flow run's event, or None
    when it is alive, finished, or another detector ended it first."""
    for _ in range(_ATTEMPTS):
        try:
            history = read_flow_run(log, flow_run_id)
        except RunNotFound:
            return None
        run = live_run(flow_run_id, history.events)
        moment = now or utcnow()
        found = (verdict(run, moment, here, alive, listening_since=listening_since, reconnect_allowance=reconnect_allowance)
                 if run is not None else None)
        if found is None or not isinstance(decide(history.state, RunState.named(found.state_name), moment), Accepted):
            return None
        meta = EventMeta(actor=_ACTOR, correlation_id=_correlation(history.created, flow_run_id))
        events = [_state_event("flow-run", flow_run_id, None, found, meta)]
        events += [_state_event("task-run", flow_run_id, task_run_id, found, meta)
                   for task_run_id in _running_task_runs(history.events)]
        try:
            return log.append_streams([StreamAppend(flow_run_stream(flow_run_id), events, history.version)])[0]
        except ConcurrencyConflict:
            continue  # the run wrote (a heartbeat, its end) or another detector won: look again
    return None


def _state_event(kind: str, flow_run_id: str, task_run_id: str | None, found: Verdict, meta: EventMeta) -> NewEvent:
    name = found.state_name
    data = StateChanged(flow_run_id=flow_run_id, task_run_id=task_run_id, state_type=STATE_NAMES[name],
                        state_name=name, message=found.message).as_data()
    if name == "Crashed":
        data["error"] = {"type": "Crashed", "message": found.message}
    return NewEvent(type=f"{kind}.{name}", data=data, meta=meta,
                    id=derived_id(_ACTOR, kind, name, task_run_id or flow_run_id))


def _running_task_runs(events: Iterable[StoredEvent]) -> list[str]:
    states: dict[str, RunState | None] = {}
    for event in events:
        task_run_id = event.data.get("task_run_id")
        if event.type.startswith("task-run.") and isinstance(task_run_id, str):
            states[task_run_id] = evolve(states.get(task_run_id), event)
    return [run_id for run_id, state in states.items() if state is not None and state.type is StateType.RUNNING]


def _correlation(created: Mapping[str, Any], flow_run_id: str) -> UUID | None:
    try:
        return UUID(str(created.get("root_flow_run_id") or flow_run_id))
    except ValueError:
        return None
