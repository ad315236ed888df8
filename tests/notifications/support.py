"""Helpers for the notifications tests: automations from rule text, firings recorded by hand,
a dispatcher over a real store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.notifications import Automation, parse_rule
from ledgerflow.notifications.actions import ActionRunner
from ledgerflow.notifications.blocks import BlockStore
from ledgerflow.notifications.context import run_as_of, template_context
from ledgerflow.notifications.definitions import Automations
from ledgerflow.notifications.dispatch import Dispatcher, RetryPolicy, record_outcomes
from ledgerflow.notifications.engine import AutomationEngine
from ledgerflow.notifications.evaluation import event_ref, firing_id
from ledgerflow.notifications.firing import automation_stream, firing_events
from ledgerflow.notifications.matching import run_id_of
from ledgerflow.notifications.secretbox import SecretBox, load_keys
from ledgerflow.notifications.triggers import Fired

__all__ = ["FAST", "Clock", "blocks_in", "create_automation", "dispatching", "fire_by_hand", "outcomes_of", "pump", "drained",
           "running_engine"]

FAST = RetryPolicy(attempts=4, first_delay=0.02, factor=2.0, max_delay=0.2)


def create_automation(store: EventStore, text: str) -> Automation:
    return Automations(store).create(parse_rule(text))


def blocks_in(store: EventStore, home: Path) -> BlockStore:
    return BlockStore.of(store, SecretBox(load_keys(None, home)))


def fire_by_hand(store: EventStore, automation: Automation, event: StoredEvent) -> list[StoredEvent]:
    """Record a firing of `automation` on `event` as the engine would; return its actions."""
    fired = Fired(event_ref(event), "", event.occurred.timestamp(), 1, "reactive")
    run_id = run_id_of(event)
    flow_run = run_as_of(run_id, store.read_stream(f"flow-run-{run_id}"), event) if run_id else None
    new = firing_events(firing_id(automation.id, fired), automation, fired, event, run_id,
                        template_context(event, flow_run, automation))
    stored = store.append(automation_stream(automation.id), new)
    return [e for e in stored if e.type == "action.triggered"]


@contextmanager
def dispatching(store: EventStore, blocks: BlockStore, **options: object) -> Iterator[Dispatcher]:
    options.setdefault("retry", FAST)
    dispatcher = Dispatcher(
        lambda session: ActionRunner(store, blocks.get, session).run,
        lambda outcomes: record_outcomes(store.append_streams, outcomes),
        **options,  # type: ignore[arg-type]
    )
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def outcomes_of(store: EventStore, automation: Automation) -> list[StoredEvent]:
    return [e for e in store.read_stream(automation_stream(automation.id)) if e.type in ("action.succeeded", "action.failed")]


class Clock:
    """A clock the test moves by hand (proactive windows expire with it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pump(engine: AutomationEngine, store: EventStore) -> None:
    """Feed the engine the log up to its head, then tick (what its consumer service does)."""
    while True:
        head = Cursor.parse(store.head())
        page = store.read_page(after=engine.cursor, limit=500)
        engine.handle(page.events, page.next_after)
        if engine.cursor >= head:
            break
    engine.tick()


def drained(engine: AutomationEngine, store: EventStore) -> bool:
    """Pump once; whether every action's outcome has come back through the log."""
    pump(engine, store)
    return engine.pending == {}


@contextmanager
def running_engine(store: EventStore, blocks: BlockStore, clock: Clock, **options: object) -> Iterator[AutomationEngine]:
    with dispatching(store, blocks, **options) as dispatcher:
        engine = AutomationEngine(store, blocks.engine, dispatcher, clock=clock, settle=0.0)
        engine.load()
        yield engine
