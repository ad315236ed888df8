"""Every (current, proposed) pair of the run state machine, and `evolve` of each event kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from ledgerflow.events.model import EventMeta, StoredEvent
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.events.transitions import (
    Accepted,
    Delayed,
    Rejected,
    RunState,
    decide,
    evolve,
    fold,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
STATES = [RunState.named(name) for name in STATE_NAMES]
S = StateType


def expected(current: RunState | None, proposed: RunState) -> type:
    """The policy, written out as a table of plain conditions."""
    if proposed.name == "RolledBack":
        return Accepted if current is not None and current.name == "Completed" else Rejected
    if current is not None and current.type in TERMINAL:
        return Rejected
    if current is None:
        return Accepted if proposed.type in (S.SCHEDULED, S.PENDING) and proposed.name != "Resuming" else Rejected
    if current.type == S.CANCELLING and proposed.type not in TERMINAL:
        return Rejected
    if current.type in (S.RUNNING, S.PAUSED) and proposed.type == S.PENDING:
        return Rejected
    if proposed.name == "Resuming" and current.type != S.PAUSED:
        return Rejected
    if current.type == S.PAUSED and proposed.type == S.PAUSED:
        return Rejected
    if current.name == "Suspended" and proposed.type == S.RUNNING:
        return Rejected
    if proposed.name == "Completed" and current.type not in (S.RUNNING, S.CANCELLING):
        return Rejected
    if current == proposed and proposed.type != S.RUNNING:
        return Rejected
    return Accepted


@pytest.mark.parametrize("current", [None, *STATES], ids=lambda s: s.name if s else "none")
@pytest.mark.parametrize("proposed", STATES, ids=lambda s: s.name)
def test_every_pair(current: RunState | None, proposed: RunState) -> None:
    decision = decide(current, proposed, NOW)
    assert type(decision) is expected(current, proposed)
    if isinstance(decision, Rejected):
        assert decision.reason
    else:
        assert decision == Accepted(proposed)


def test_a_scheduled_run_waits_for_its_time() -> None:
    later = NOW + timedelta(seconds=30)
    waiting = RunState.named("AwaitingRetry", later)
    assert decide(waiting, RunState.named("Running"), NOW) == Delayed(later)
    assert decide(waiting, RunState.named("Running"), later) == Accepted(RunState.named("Running"))
    assert isinstance(decide(waiting, RunState.named("Crashed"), NOW), Accepted)


def _event(event_type: str, data: dict[str, object] | None = None) -> StoredEvent:
    return StoredEvent(
        id=uuid4(), type=event_type, stream="s", occurred=NOW, data=data or {},
        meta=EventMeta(), position=1, stream_position=1, recorded=NOW, hash="", cursor="0.1",
    )


@pytest.mark.parametrize("kind", ["flow-run", "task-run"])
def test_creation_makes_a_run_pending(kind: str) -> None:
    assert evolve(None, _event(f"{kind}.created")) == RunState.named("Pending")


def test_events_that_are_not_state_changes_leave_the_state() -> None:
    running = RunState.named("Running")
    assert evolve(running, _event("log.emitted")) == running
    assert evolve(running, _event("artifact.created")) == running


def test_evolve_keeps_the_time_a_retry_is_due() -> None:
    due = NOW + timedelta(seconds=5)
    event = _event("task-run.AwaitingRetry", {"scheduled_time": due.isoformat()})
    assert evolve(RunState.named("Running"), event) == RunState.named("AwaitingRetry", due)


def test_the_runtimes_task_run_sequences_are_all_accepted() -> None:
    """created, Running, (AwaitingRetry, Running)*, then an outcome: what the engine writes."""
    for outcome in ("Completed", "Failed", "TimedOut", "Crashed"):
        names = ["Running", "AwaitingRetry", "Running", outcome]
        state = fold([_event("task-run.created")])
        for name in names:
            assert decide(state, RunState.named(name), NOW) == Accepted(RunState.named(name)), (state, name)
            state = RunState.named(name)
    for direct in ("Cached", "Failed"):  # a cache hit, an upstream failure: no Running
        assert isinstance(decide(fold([_event("task-run.created")]), RunState.named(direct), NOW), Accepted)
