"""The run state machine: may a run in state X move to proposed state Y? Pure, no I/O.

`decide(current, proposed, now)` tries small named rules in priority order; the first that
has an opinion wins, otherwise the move is accepted. `evolve(state, event)` folds a state
event into the run's state, so a run's state is `reduce(evolve, its events, None)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import reduce
from typing import NamedTuple

from ledgerflow.events.model import StoredEvent
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType, state_from_event_type

__all__ = [
    "RULES",
    "Accepted",
    "Decision",
    "Delayed",
    "Rejected",
    "RunState",
    "decide",
    "evolve",
    "fold",
]


class RunState(NamedTuple):
    type: StateType
    name: str
    scheduled_time: datetime | None = None

    @classmethod
    def named(cls, name: str, scheduled_time: datetime | None = None) -> RunState:
        return cls(STATE_NAMES[name], name, scheduled_time)


class Accepted(NamedTuple):
    state: RunState


class Rejected(NamedTuple):
    reason: str


class Delayed(NamedTuple):
    until: datetime


Decision = Accepted | Rejected | Delayed
Rule = Callable[[RunState | None, RunState, datetime], Decision | None]

S = StateType


def terminal_is_final(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is not None and current.type in TERMINAL:
        return Rejected(f"the run is already {current.name}; a finished run does not change state")
    return None


def starts_scheduled_or_pending(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is None and proposed.type not in (S.SCHEDULED, S.PENDING):
        return Rejected(f"a run starts Scheduled or Pending, not {proposed.name}")
    return None


def cancelling_only_ends(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is not None and current.type == S.CANCELLING and proposed.type not in TERMINAL:
        return Rejected(f"a cancelling run can only end, not become {proposed.name}")
    return None


def no_way_back_to_pending(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is not None and current.type in (S.RUNNING, S.PAUSED) and proposed.type == S.PENDING:
        return Rejected(f"a {current.name} run cannot go back to Pending")
    return None


def only_running_completes(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if proposed.name == "Completed" and (current is None or current.type not in (S.RUNNING, S.CANCELLING)):
        where = current.name if current else "nothing"
        return Rejected(f"only a running run can complete (it is {where})")
    return None


def wait_until_scheduled(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if (
        current is not None
        and current.type == S.SCHEDULED
        and proposed.type in (S.PENDING, S.RUNNING)
        and current.scheduled_time is not None
        and current.scheduled_time > now
    ):
        return Delayed(current.scheduled_time)
    return None


def no_self_loop(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is not None and current == proposed and proposed.type != S.RUNNING:
        return Rejected(f"the run is already {current.name}")
    return None


RULES: tuple[Rule, ...] = (
    terminal_is_final,
    starts_scheduled_or_pending,
    cancelling_only_ends,
    no_way_back_to_pending,
    only_running_completes,
    no_self_loop,
    wait_until_scheduled,
)


def decide(current: RunState | None, proposed: RunState, now: datetime) -> Decision:
    for rule in RULES:
        decision = rule(current, proposed, now)
        if decision is not None:
            return decision
    return Accepted(proposed)


_CREATED = frozenset({"flow-run.created", "task-run.created"})


def evolve(state: RunState | None, event: StoredEvent) -> RunState | None:
    """The run's state after `event` (events that are not state changes leave it as it was).

    `flow-run.created` / `task-run.created` make a run Pending: the runtime folds the Pending
    state into the creation event to keep a task run at three events.
    """
    if event.type in _CREATED:
        return RunState.named("Pending")
    parsed = state_from_event_type(event.type)
    if parsed is None:
        return state
    _, name, type_ = parsed
    scheduled = event.data.get("scheduled_time")
    return RunState(type_, name, datetime.fromisoformat(scheduled) if scheduled else None)


def fold(events: Iterable[StoredEvent], state: RunState | None = None) -> RunState | None:
    return reduce(evolve, events, state)
