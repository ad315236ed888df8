"""The run state machine: may a run in state X move to proposed state Y? Pure, no I/O.

`decide(current, proposed, now)` tries small named rules in priority order; the first that
has an opinion wins, otherwise the move is accepted. `evolve(state, event)` folds a state
event into the run's state, so a run's state is `reduce(evolve, its events, None)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import reduce
from typing import Any, NamedTuple, Protocol, TypeVar
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType, state_from_event_type

__all__ = [
    "RULES",
    "Accepted",
    "Decision",
    "Delayed",
    "Rejected",
    "RunState",
    "admissible",
    "decide",
    "evolve",
    "fold",
]


class Event(Protocol):
    """What the fold reads of an event: stored or not yet appended."""

    @property
    def type(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


E = TypeVar("E", bound=Event)


class RunState(NamedTuple):
    type: StateType
    name: str
    scheduled_time: datetime | None = None
    pause_expiration: datetime | None = None
    """When a Paused / Suspended run can no longer be resumed (None: never)."""

    @classmethod
    def named(cls, name: str, scheduled_time: datetime | None = None,
              pause_expiration: datetime | None = None) -> RunState:
        return cls(STATE_NAMES[name], name, scheduled_time, pause_expiration)


class Accepted(NamedTuple):
    state: RunState


class Rejected(NamedTuple):
    reason: str


class Delayed(NamedTuple):
    until: datetime


Decision = Accepted | Rejected | Delayed
Rule = Callable[[RunState | None, RunState, datetime], Decision | None]

S = StateType


def completed_may_roll_back(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    """A completed task run whose transaction rolled back (its rollback hooks undid its
    effects) is `RolledBack`, Prefect's one move out of a final state."""
    if proposed.name == "RolledBack":
        if current is not None and current.name == "Completed":
            return Accepted(proposed)
        return Rejected(f"only a Completed run can be rolled back (it is {current.name if current else 'nothing'})")
    return None


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


def resuming_only_from_pause(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if proposed.name == "Resuming" and (current is None or current.type != S.PAUSED):
        return Rejected(f"only a paused run can be resumed (it is {current.name if current else 'nothing'})")
    return None


def paused_once(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    if current is not None and current.type == S.PAUSED and proposed.type == S.PAUSED:
        return Rejected(f"the run is already {current.name}")
    return None


def pause_expires(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    """Past its pause's timeout a paused run cannot be resumed any more (it can only end)."""
    if (
        current is not None
        and current.type == S.PAUSED
        and current.pause_expiration is not None
        and current.pause_expiration <= now
        and proposed.type in (S.RUNNING, S.SCHEDULED)
    ):
        return Rejected(f"the pause expired at {current.pause_expiration.isoformat()}; the run can no longer be resumed")
    return None


def suspended_runs_again(current: RunState | None, proposed: RunState, now: datetime) -> Decision | None:
    """A suspended run's process has ended: it resumes as `Resuming` and is executed again."""
    if current is not None and current.name == "Suspended" and proposed.type == S.RUNNING:
        return Rejected("a suspended run has no process to go on: it resumes as Resuming and is executed again")
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
    completed_may_roll_back,
    terminal_is_final,
    starts_scheduled_or_pending,
    cancelling_only_ends,
    no_way_back_to_pending,
    resuming_only_from_pause,
    paused_once,
    pause_expires,
    suspended_runs_again,
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


def _proposed(event: Event) -> RunState | None:
    parsed = state_from_event_type(event.type)
    if parsed is None:
        return None
    _, name, type_ = parsed
    scheduled = event.data.get("scheduled_time")
    expires = event.data.get("pause_expiration") if type_ == StateType.PAUSED else None
    return RunState(type_, name, datetime.fromisoformat(scheduled) if scheduled else None,
                    datetime.fromisoformat(expires) if expires else None)


def evolve(state: RunState | None, event: Event) -> RunState | None:
    """The run's state after `event` (events that are not state changes leave it as it was).

    `flow-run.created` / `task-run.created` make a run Pending: the runtime folds the Pending
    state into the creation event to keep a task run at three events (a reused one is a single
    `task-run.Reused`, which carries its creation).
    """
    if event.type in _CREATED:
        return RunState.named("Pending")
    proposed = _proposed(event)
    return state if proposed is None else proposed


def fold(events: Iterable[Event], state: RunState | None = None) -> RunState | None:
    return reduce(evolve, events, state)


def admissible(state: RunState | None, events: Iterable[E], now: datetime, kind: str) -> tuple[list[E], RunState | None]:
    """The events to keep of a batch meant to follow `state`: the state changes of `kind`
    (`flow-run`) that `decide` accepts in turn, and every other event; and the state after.

    A writer whose stream another actor wrote to meanwhile uses this to drop what the rules
    now refuse (a `Running` after someone else's `Cancelling`)."""
    kept: list[E] = []
    prefix = kind + "."
    for event in events:
        proposed = _proposed(event) if event.type.startswith(prefix) else None
        if proposed is not None:
            decision = decide(state, proposed, now)
            if isinstance(decision, Rejected):
                continue
            state = proposed
        elif event.type.startswith(prefix) and event.type in _CREATED:
            state = RunState.named("Pending")
        kept.append(event)
    return kept, state
