"""The backtest: a rule run over stored events, sending nothing, saying when it would have
fired and what each message would have said. Tune thresholds and cooldowns on real history
before enabling a rule.

Pure apart from `runs(flow_run_id)`, which the caller provides to read a run's stream (for
the resource filters and the `flow_run` of the templates); the engine's own evaluator and
renderer do the work, so a backtest fires exactly where the engine would have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import StoredEvent, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.store import EventStore
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.notifications.context import run_as_of, template_context
from ledgerflow.notifications.evaluation import Evaluator, Firing
from ledgerflow.notifications.firing import render_actions
from ledgerflow.notifications.matching import RunFacts, run_id_of
from ledgerflow.notifications.model import Automation, AutomationSpec, ProactiveTrigger

__all__ = ["BacktestFiring", "RunEvents", "backtest", "backtest_log", "backtest_types"]

_NONE = TypePatterns(frozenset(), (), re.compile("(?!)"))

RunEvents = Callable[[str], Sequence[StoredEvent]]
"""A run's stream (empty if the run is unknown)."""


class BacktestFiring(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    posture: str
    bucket: str
    count: int
    triggering_event: dict[str, Any]
    flow_run_id: str | None
    actions: list[dict[str, Any]]
    """Per action: index, type, block, and the rendered `message` (or the template `error`)."""


def backtest_types(spec: AutomationSpec) -> list[str]:
    """The event types a backtest of `spec` must read."""
    trigger = spec.trigger
    patterns = list(trigger.match.events)
    if isinstance(trigger, ProactiveTrigger):
        patterns += trigger.after
    return patterns


def backtest(
    spec: AutomationSpec, events: Iterable[StoredEvent], runs: RunEvents, *, until: datetime,
) -> list[BacktestFiring]:
    """When `spec` would have fired over `events` (in log order), up to `until`."""
    now = datetime.now(UTC)
    automation = Automation(
        **spec.model_dump(exclude={"enabled"}), enabled=True,
        id=derived_id("backtest", spec.name), created=now, updated=now,
    )
    evaluator = Evaluator([automation])
    streams: dict[str, Sequence[StoredEvent]] = {}
    openers: dict[str, StoredEvent] = {}
    after = TypePatterns.parse(spec.trigger.after) if isinstance(spec.trigger, ProactiveTrigger) else _NONE

    def run_events(run_id: str | None) -> Sequence[StoredEvent]:
        if run_id is None:
            return ()
        if run_id not in streams:
            streams[run_id] = runs(run_id)
        return streams[run_id]

    def facts(event: StoredEvent) -> RunFacts | None:
        run_id = run_id_of(event)
        history = run_events(run_id)
        if run_id is None or not history:
            return None
        created = next((e.data for e in history if e.type == "flow-run.created"), {})
        return RunFacts.from_created(run_id, created)

    found: list[BacktestFiring] = []

    def describe(firing: Firing, current: StoredEvent | None) -> BacktestFiring:
        event = openers[firing.fired.event.id] if current is None or firing.fired.posture == "proactive" else current
        run_id = run_id_of(event)
        history = run_events(run_id)
        flow_run = run_as_of(run_id, history, event) if run_id and history else None
        rendered = render_actions(automation, template_context(event, flow_run, automation), run_id)
        return BacktestFiring(
            at=datetime.fromtimestamp(firing.fired.at, UTC),
            posture=firing.fired.posture,
            bucket=firing.fired.bucket,
            count=firing.fired.count,
            triggering_event={"id": str(event.id), "type": event.type, "stream": event.stream,
                              "occurred": event.occurred.isoformat()},
            flow_run_id=run_id,
            actions=[
                {"index": i, "type": action.type, "block": getattr(action, "block", None),
                 **({"message": message} if error is None else {"error": error})}
                for i, (action, (message, error)) in enumerate(zip(automation.actions, rendered, strict=True))
            ],
        )

    limit = until.timestamp()
    for event in events:
        if event.occurred.timestamp() > limit or not evaluator.concerned(event.type):
            continue
        if after.matches(event.type):
            openers[str(event.id)] = event
        run = facts(event) if evaluator.needs_run(event) else None
        found.extend(describe(firing, event) for firing in evaluator.observe(event, run))
    found.extend(describe(firing, None) for firing in evaluator.advance(limit))
    return found


def backtest_log(
    store: EventStore, spec: AutomationSpec, *, since: datetime | None = None, until: datetime | None = None,
) -> list[BacktestFiring]:
    """`backtest` over the store's events that occurred from `since` (default: all) to `until`
    (default: now), reading only the event types the rule looks at."""
    limit = until or utcnow()
    events = (e for e in store.iter_all(types=backtest_types(spec)) if since is None or e.occurred >= since)
    return backtest(spec, events, lambda run_id: store.read_stream(flow_run_stream(run_id)), until=limit)
