"""Random walks through the run state machine: accepted moves folded back give the state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledgerflow.events.model import EventMeta, StoredEvent
from ledgerflow.events.states import STATE_NAMES, TERMINAL
from ledgerflow.events.transitions import Accepted, Delayed, Rejected, RunState, decide, fold

NOW = datetime(2026, 6, 1, tzinfo=UTC)


class RunMachine(RuleBasedStateMachine):
    """Proposes any state (due now, past or future) or logs; only accepted moves are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.state: RunState | None = None
        self.log: list[StoredEvent] = []
        self.now = NOW

    def _record(self, event_type: str, data: dict[str, object] | None = None) -> None:
        position = len(self.log) + 1
        self.log.append(
            StoredEvent(
                id=uuid4(), type=event_type, stream="flow-run-x", occurred=self.now, data=data or {},
                meta=EventMeta(), position=position, stream_position=position, recorded=self.now,
                hash="", cursor=f"0.{position}",
            )
        )

    @precondition(lambda self: self.state is None)
    @rule()
    def create(self) -> None:
        self._record("task-run.created")
        self.state = RunState.named("Pending")

    @rule(name=st.sampled_from(sorted(STATE_NAMES)), delay=st.sampled_from([None, -5, 5]))
    def propose(self, name: str, delay: int | None) -> None:
        due = self.now + timedelta(seconds=delay) if delay is not None else None
        proposed = RunState.named(name, due)
        before = self.state
        decision = decide(before, proposed, self.now)
        if isinstance(decision, Accepted):
            assert decision.state == proposed
            self.state = proposed
            self._record(f"task-run.{name}", {"scheduled_time": due.isoformat()} if due else None)
        elif isinstance(decision, Delayed):
            assert before is not None and before.scheduled_time == decision.until > self.now
        else:
            assert isinstance(decision, Rejected) and decision.reason
        if before is not None and before.type in TERMINAL:
            # The one way out of a final state: a Completed run whose transaction rolled back.
            rolled_back = before.name == "Completed" and self.state == RunState.named("RolledBack", due)
            assert self.state == before or rolled_back, "a finished run changed state"

    @rule()
    def log_line(self) -> None:
        self._record("log.emitted", {"message": "hello"})

    @rule(seconds=st.integers(min_value=1, max_value=10))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @invariant()
    def folding_the_log_gives_the_state(self) -> None:
        assert fold(self.log) == self.state

    @invariant()
    def a_waiting_run_is_only_delayed_until_it_is_due(self) -> None:
        if self.state is not None and self.state.scheduled_time is not None:
            decision = decide(self.state, RunState.named("Running"), self.now)
            if self.state.scheduled_time > self.now and self.state.name in ("Scheduled", "AwaitingRetry", "Late"):
                assert decision == Delayed(self.state.scheduled_time)


def test_random_walks_fold_to_the_tracked_state() -> None:
    run_state_machine_as_test(RunMachine)
