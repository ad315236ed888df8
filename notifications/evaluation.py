"""Every enabled automation's trigger over the log, without I/O: events in, firings out.

The engine and the backtest share this. The caller hands each event in log order with the
facts of its flow run (`RunFacts`, or None) and moves the time on when the log is idle
(`advance`); an `Evaluator`'s time is the newest event time it has seen or been given.
`needs_run(event)` says whether the run's facts matter for an event, so the caller looks
them up only then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from uuid import UUID

from ledgerflow.events.ids import derived_id
from ledgerflow.events.liveness import HEARTBEAT
from ledgerflow.events.model import StoredEvent
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.notifications.matching import RunFacts, resource_matches
from ledgerflow.notifications.model import Automation, ProactiveTrigger
from ledgerflow.notifications.triggers import EventRef, Fired, TriggerState

__all__ = ["Evaluator", "Firing", "bucket_of", "event_ref", "firing_id"]


@dataclass(frozen=True)
class Firing:
    automation: Automation
    fired: Fired

    @property
    def id(self) -> UUID:
        return firing_id(self.automation.id, self.fired)


def firing_id(automation_id: UUID, fired: Fired) -> UUID:
    """The `automation.triggered` event's id: one per (automation, triggering event), or per
    window for a proactive trigger (the event that opened it)."""
    if fired.posture == "proactive":
        return derived_id("automation.triggered", automation_id, "window", fired.bucket, fired.event.id)
    return derived_id("automation.triggered", automation_id, fired.event.id)


def event_ref(event: StoredEvent) -> EventRef:
    return EventRef(str(event.id), event.stream, event.stream_position, event.occurred.timestamp())


def bucket_of(for_each: str | None, run: RunFacts | None) -> str:
    if for_each == "run":
        return run.flow_run_id if run else ""
    if for_each == "flow":
        return (run.flow_name or "") if run else ""
    return ""


class _Rule:
    __slots__ = ("after", "automation", "events", "state")

    def __init__(self, automation: Automation, state: TriggerState | None = None) -> None:
        self.automation = automation
        trigger = automation.trigger
        self.events = TypePatterns.parse(trigger.match.events)
        self.after = TypePatterns.parse(trigger.after) if isinstance(trigger, ProactiveTrigger) else None
        self.state = state or TriggerState(trigger)

    def concerns(self, event_type: str) -> tuple[bool, bool]:
        if event_type == HEARTBEAT:  # every running run beats: only a trigger naming heartbeats counts them
            return HEARTBEAT in self.events.exact, self.after is not None and HEARTBEAT in self.after.exact
        return self.events.matches(event_type), self.after is not None and self.after.matches(event_type)


_TYPES_CACHED = 1_000


class _ForType(NamedTuple):
    """The rules an event type reaches: (rule, matched, opens) for each rule it concerns, and
    each proactive one it does not (their windows expire with any event's time)."""

    rules: list[tuple[_Rule, bool, bool]]
    needs_run: bool


class Evaluator:
    def __init__(self, automations: Iterable[Automation] = ()) -> None:
        self._rules: dict[UUID, _Rule] = {}
        self._by_type: dict[str, _ForType] = {}
        """Per event type, what `_for_type` found: matching each rule's patterns on every
        event cost more than the rest of the evaluation at a thousand firings a second."""
        self.now = float("-inf")
        for automation in automations:
            self.put(automation)

    @property
    def automations(self) -> list[Automation]:
        return [rule.automation for rule in self._rules.values()]

    def put(self, automation: Automation) -> None:
        """Add or change an automation; a disabled one is removed. Its trigger's state is kept
        unless the trigger changed."""
        if not automation.enabled:
            self.remove(automation.id)
            return
        old = self._rules.get(automation.id)
        keep = old.state if old is not None and old.automation.trigger == automation.trigger else None
        self._rules[automation.id] = _Rule(automation, keep)
        self._by_type.clear()

    def remove(self, automation_id: UUID) -> None:
        self._rules.pop(automation_id, None)
        self._by_type.clear()

    def patterns(self) -> set[str]:
        """The event types (names and `*` patterns) that some automation's trigger looks at."""
        found: set[str] = set()
        for rule in self._rules.values():
            trigger = rule.automation.trigger
            found.update(trigger.match.events)
            if isinstance(trigger, ProactiveTrigger):
                found.update(trigger.after)
        return found

    def concerned(self, event_type: str) -> bool:
        """Whether any automation's trigger looks at events of this type."""
        return any(matched or opens for _, matched, opens in self._for_type(event_type).rules)

    def needs_run(self, event: StoredEvent) -> bool:
        """Whether the run's facts matter for this event (a filter or a bucket per run/flow)."""
        return self._for_type(event.type).needs_run

    def _for_type(self, event_type: str) -> _ForType:
        found = self._by_type.get(event_type)
        if found is None:
            rules = []
            needs_run = False
            for rule in self._rules.values():
                matched, opens = rule.concerns(event_type)
                if matched or opens:
                    trigger = rule.automation.trigger
                    needs_run = needs_run or trigger.match.filters_runs or trigger.for_each is not None
                if matched or opens or rule.after is not None:
                    rules.append((rule, matched, opens))
            if len(self._by_type) >= _TYPES_CACHED:  # custom event types are unbounded
                self._by_type.clear()
            found = self._by_type[event_type] = _ForType(rules, needs_run)
        return found

    def observe(self, event: StoredEvent, run: RunFacts | None) -> list[Firing]:
        """Evaluate every automation on one event (in log order)."""
        ref = event_ref(event)
        self.now = max(self.now, ref.occurred)
        firings: list[Firing] = []
        for rule, matched, opens in self._for_type(event.type).rules:
            if (matched or opens) and resource_matches(rule.automation.trigger.match, run):
                bucket = bucket_of(rule.automation.trigger.for_each, run)
                fired = rule.state.observe(ref, bucket, self.now, matched=matched, opens=opens)
            elif rule.after is not None:
                fired = rule.state.advance(self.now)
            else:
                continue
            firings.extend(Firing(rule.automation, each) for each in fired)
        return firings

    def advance(self, now: float) -> list[Firing]:
        """Move the time on (the log is idle up to `now`): proactive windows may expire."""
        self.now = max(self.now, now)
        firings: list[Firing] = []
        for rule in self._rules.values():
            firings.extend(Firing(rule.automation, each) for each in rule.state.advance(self.now))
            rule.state.prune()
        return firings

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The trigger states, keyed by automation id (definitions live in the log)."""
        return {
            "now": None if self.now == float("-inf") else self.now,
            "states": {
                str(key): {"trigger": rule.automation.trigger.model_dump(mode="json"), "state": rule.state.to_json()}
                for key, rule in self._rules.items()
            },
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Take trigger states back from `snapshot` for the automations whose trigger is unchanged."""
        if snapshot.get("now") is not None:
            self.now = max(self.now, float(snapshot["now"]))
        for key, saved in snapshot.get("states", {}).items():
            rule = self._rules.get(UUID(key))
            if rule is not None and rule.automation.trigger.model_dump(mode="json") == saved["trigger"]:
                rule.state = TriggerState.from_json(rule.automation.trigger, saved["state"])
