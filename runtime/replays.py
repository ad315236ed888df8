"""Replay from failure: a new run of a finished flow run that reuses what already succeeded.

`replay(run_id)` requests a run with `replay_of = run_id` (same entrypoint and parameters,
overridable) and executes it here, or leaves it to the server (`detach=True`). While it runs,
each task call is matched against the original run by its identity: task key, occurrence of
that key in the run, and the hash of its inputs. A match whose original task run completed,
and whose result can still be loaded, is not executed: the new task run is recorded
`Reused`, naming the task run that produced the value (`cached_from`), and the stored value is
returned. Everything else runs for real, so a task whose inputs changed (new parameters, an
upstream that produced something else) runs again. A subflow that completed in the original
is reused whole; one that did not is replayed inside, against its own original stream.

The original run is never changed: it is in the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledgerflow.events import StoredEvent
from ledgerflow.events.gcpause import cycle_collection_paused
from ledgerflow.events.payloads import creates_task_run, flow_run_stream
from ledgerflow.events.runs import FlowRunHistory, RunNotFound, RunStateConflict, replay_request, request_flow_run
from ledgerflow.events.transitions import fold
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType, state_from_event_type
from ledgerflow.runtime.eventlog import EventLog

__all__ = [
    "Prior",
    "ReplayError",
    "ReplayOptions",
    "ReplayPlan",
    "RunNotFinished",
    "RunNotReplayable",
    "UnknownRun",
    "Verdict",
    "plan_replay",
    "request_replay",
    "resume_plan",
]

_log = logging.getLogger("ledgerflow.runs")
_REUSABLE = frozenset({"Completed", "Cached", "Reused"})
_PLAN_TYPES = ["task-run.created"] + [f"task-run.{name}" for name, kind in STATE_NAMES.items() if kind in TERMINAL]
"""What a plan reads of the original: task runs and how they ended (not their Running states)."""


class ReplayError(Exception):
    """The run cannot be replayed.

        ReplayError
        ├── UnknownRun          (also RunNotFound) no such run
        ├── RunNotFinished      (also RunStateConflict) it is still scheduled or running
        └── RunNotReplayable    it records no entrypoint to load its flow from
    """


class UnknownRun(ReplayError, RunNotFound):
    pass


class RunNotFinished(ReplayError, RunStateConflict):
    pass


class RunNotReplayable(ReplayError, ValueError):
    pass


class ReplayOptions(NamedTuple):
    from_task: str | None = None
    """Run everything for real from the first call of this task (name or key) on."""
    no_reuse: tuple[str, ...] = ()
    """Tasks (names or keys) that always run."""

    def as_data(self) -> dict[str, Any]:
        return {"from_task": self.from_task, "no_reuse": list(self.no_reuse)}

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> ReplayOptions:
        data = data or {}
        return cls(data.get("from_task"), tuple(data.get("no_reuse") or ()))


class Identity(NamedTuple):
    task_key: str
    occurrence: int
    input_hash: str


class Prior(NamedTuple):
    """A task run of the original run, as a replay may reuse it (a plan holds one per task
    run of the original: a tuple is built in a third of a frozen dataclass's time)."""

    task_run_id: str
    task_name: str
    state_name: str | None
    producer: str | None
    """The task run that computed the value (itself, or what a Cached/Reused state named)."""
    result: Mapping[str, Any] | None
    """The stored result's reference, when the run completed with one."""
    child_flow_run_id: str | None

    @property
    def reusable(self) -> bool:
        return self.state_name in _REUSABLE and bool(self.result and self.result.get("persisted"))


class Verdict(NamedTuple):
    """One task run of the original and what a replay would do with it (`--dry-run`)."""

    task_run_id: str
    task_name: str
    occurrence: int
    state_name: str | None
    reuse: bool
    reason: str


@dataclass
class ReplayPlan:
    """What a replay of `original` may reuse, and the rules of this replay."""

    original: str
    priors: dict[Identity, Prior]
    options: ReplayOptions = ReplayOptions()
    ordered: list[tuple[Identity, Prior]] = field(default_factory=list)
    cut: bool = False
    """Set once `options.from_task` was called: from then on nothing is reused."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def match(self, task_key: str, task_name: str, occurrence: int, input_hash: str | None) -> Prior | None:
        """The original task run this call may reuse, or None (it runs for real)."""
        options = self.options
        with self._lock:
            if options.from_task is not None and options.from_task in (task_name, task_key):
                self.cut = True
            if self.cut or task_name in options.no_reuse or task_key in options.no_reuse or input_hash is None:
                return None
        return self.priors.get(Identity(task_key, occurrence, input_hash))

    def preview(self) -> list[Verdict]:
        """For each task run of the original, whether an unchanged replay would reuse it."""
        verdicts = []
        cut = False
        for identity, prior in self.ordered:
            if self.options.from_task in (prior.task_name, identity.task_key):
                cut = True
            if cut:
                verdicts.append(Verdict(prior.task_run_id, prior.task_name, identity.occurrence, prior.state_name,
                                        False, f"at or after --from-task {self.options.from_task}"))
            elif prior.task_name in self.options.no_reuse or identity.task_key in self.options.no_reuse:
                verdicts.append(Verdict(prior.task_run_id, prior.task_name, identity.occurrence, prior.state_name,
                                        False, "--no-reuse"))
            elif prior.reusable:
                verdicts.append(Verdict(prior.task_run_id, prior.task_name, identity.occurrence, prior.state_name,
                                        True, f"result of {prior.producer}, if its inputs are unchanged"))
            else:
                why = f"it ended {prior.state_name}" if prior.state_name not in _REUSABLE else "its result was not persisted"
                if prior.state_name is None:
                    why = "it never finished"
                verdicts.append(Verdict(prior.task_run_id, prior.task_name, identity.occurrence, prior.state_name,
                                        False, why))
        return verdicts


def priors_of(events: Iterable[StoredEvent]) -> list[tuple[Identity | None, Prior]]:
    """Each task run of a flow run's stream with its identity and final state, in creation order."""
    created: dict[str, dict[str, Any]] = {}
    final: dict[str, StoredEvent] = {}
    for event in events:
        if creates_task_run(event.type, event.data):
            created[event.data["task_run_id"]] = event.data
        if event.type != "task-run.created" and event.type.startswith("task-run."):
            parsed = state_from_event_type(event.type)
            if parsed is not None and "task_run_id" in event.data:
                final[event.data["task_run_id"]] = event
    found: list[tuple[Identity | None, Prior]] = []
    for task_run_id, data in created.items():
        last = final.get(task_run_id)
        name = last.type.partition(".")[2] if last is not None else None
        state = last.data if last is not None else {}
        identity = Identity(data["task_key"], data["occurrence"], data["input_hash"]) if data.get("input_hash") else None
        found.append((identity, Prior(
            task_run_id=task_run_id,
            task_name=data.get("task_name", data["task_key"]),
            state_name=name,
            producer=state.get("cached_from") or task_run_id,
            result=state.get("result"),
            child_flow_run_id=data.get("child_flow_run_id"),
        )))
    return found


def plan_replay(log: EventLog, original: str, options: ReplayOptions = ReplayOptions(), *, cut: bool = False) -> ReplayPlan:
    """The plan of a replay of `original`, read from its stream (and its subflows' outcomes);
    `cut`: nothing may be reused any more (a parent's `from_task` was already reached)."""
    with cycle_collection_paused():  # thousands of events and priors, none in a cycle
        events = log.read_stream(flow_run_stream(original), types=_PLAN_TYPES)
        if not events and not log.read_stream(flow_run_stream(original), limit=1):
            raise UnknownRun(original)
        priors: dict[Identity, Prior] = {}
        ordered: list[tuple[Identity, Prior]] = []
        for identity, prior in priors_of(events):
            if prior.child_flow_run_id is not None:
                prior = _subflow_outcome(log, prior)
            if identity is not None:
                priors.setdefault(identity, prior)
                ordered.append((identity, prior))
    return ReplayPlan(original, priors, options, ordered, cut)


def resume_plan(log: EventLog, flow_run_id: str) -> ReplayPlan:
    """What a resumed suspended run may reuse of its own earlier executions: each task call
    that completed with a stored result (the latest such, when it ran more than once)."""
    with cycle_collection_paused():
        events = log.read_stream(flow_run_stream(flow_run_id), types=_PLAN_TYPES)
        priors: dict[Identity, Prior] = {}
        ordered: list[tuple[Identity, Prior]] = []
        for identity, prior in priors_of(events):
            if prior.child_flow_run_id is not None:
                prior = _subflow_outcome(log, prior)
            if identity is None:
                continue
            if prior.reusable or identity not in priors:
                priors[identity] = prior
            ordered.append((identity, prior))
    return ReplayPlan(flow_run_id, priors, ReplayOptions(), ordered)


def _subflow_outcome(log: EventLog, stand_in: Prior) -> Prior:
    """A subflow's stand-in task run keeps no result itself: the child run's Completed does."""
    assert stand_in.child_flow_run_id is not None
    child = log.read_stream(flow_run_stream(stand_in.child_flow_run_id), types=["flow-run.*"])
    ended = next((e for e in reversed(child) if e.type.startswith("flow-run.") and _terminal(e.type)), None)
    if ended is None or ended.type != "flow-run.Completed":
        return Prior(stand_in.task_run_id, stand_in.task_name, ended.type.partition(".")[2] if ended else None,
                     None, None, stand_in.child_flow_run_id)
    return Prior(stand_in.task_run_id, stand_in.task_name, "Completed", stand_in.child_flow_run_id,
                 ended.data.get("result"), stand_in.child_flow_run_id)


def _terminal(event_type: str) -> bool:
    parsed = state_from_event_type(event_type)
    return parsed is not None and parsed[2] in TERMINAL


def request_replay(
    log: EventLog,
    run_id: str,
    *,
    parameters: Mapping[str, Any] | None = None,
    options: ReplayOptions = ReplayOptions(),
    actor: str | None = None,
) -> str:
    """Append the request of a replay of `run_id`; the new run's id. ReplayError if it cannot be."""
    run_events = log.read_stream(flow_run_stream(run_id), types=["flow-run.*"])  # not its task runs and logs
    if not run_events:
        raise UnknownRun(run_id)
    history = FlowRunHistory(run_id, run_events, fold(run_events),
                             next((e.data for e in run_events if e.type == "flow-run.created"), {}))
    if history.state is None or history.state.type not in TERMINAL and history.state.type != StateType.PAUSED:
        what = history.state.name if history.state else "not started"
        raise RunNotFinished(f"flow run {run_id} is {what}: replay it once it has finished (or cancel it first)")
    created = history.created
    entrypoint = created.get("entrypoint")
    if not entrypoint:
        raise RunNotReplayable(f"flow run {run_id} records no entrypoint: its flow cannot be loaded again")
    scheduled = request_flow_run(
        log, **replay_request(created, run_id, parameters=parameters, replay_options=options.as_data()), actor=actor,
    )
    return str(scheduled.data["flow_run_id"])
