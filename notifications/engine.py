"""The automation engine: every enabled automation evaluated over the log, firings recorded as
events, their actions delivered by the dispatcher.

It is fed by a durable consumer (events/consumer.py) in log order: `handle(batch)` for each
batch, `tick(now)` when the log is idle (proactive windows expire with the clock). The consumer
reads only the types the engine looks at (`types()`: the rules' event types, the definitions,
the outcomes and run creations); a definition that widens them ends its batch (`take`), since
the events after it were read with the narrower filter. Its state is kept in
`automation_engine_state`, written after each batch:

- `cursor`: the last event whose effects are in the state. A batch delivered again after a
  crash (at-least-once) skips what the state already holds.
- the trigger windows (notifications/evaluation.py);
- the actions triggered without an outcome seen yet (`pending`).

Why a firing is delivered exactly once across kill -9: the firing and its actions are appended
with ids derived from their cause, so evaluating a batch again appends nothing new; each
`action.triggered` id is the delivery's idempotency key, recorded before sending, and its
outcome (`action.succeeded` / `action.failed`) after. An action whose outcome the engine has not
seen stays pending in the state; after a restart the engine catches up with the log (outcomes
recorded before the crash clear their actions) and then delivers what is still pending. A
crash after the receiver got a message but before its outcome was recorded sends it again, with
the same `X-Ledgerflow-Delivery` key (at-least-once, deduplicable).

One engine runs per database at a time: `hold()` takes or renews a lease on the state row
(`LEASE` seconds), and the service handles the log only while it holds it, so the engines of
several server processes (or a server and `ledgerflow automations run`) take over from each
other instead of racing. As a second guard, the state is written by compare-and-swap on its
revision: an engine that finds it moved raises `EngineStateMoved` before dispatching, its
consumer keeps the checkpoint where it was, and it reloads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.model import NewEvent, StoredEvent, StreamAppend, utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.store import EventStore
from ledgerflow.events.transactions import write_transaction
from ledgerflow.notifications.context import run_as_of, template_context
from ledgerflow.notifications.definitions import DEFINITION_TYPES, apply_definition
from ledgerflow.notifications.dispatch import Dispatcher
from ledgerflow.notifications.evaluation import Evaluator, Firing
from ledgerflow.notifications.firing import automation_stream, firing_events
from ledgerflow.notifications.matching import RunFacts, run_id_of
from ledgerflow.notifications.model import Automation
from ledgerflow.notifications.tables import engine_state, migrate

__all__ = ["LEASE", "AutomationEngine", "EngineStateMoved"]

_log = logging.getLogger("ledgerflow.notifications")
_OUTCOMES = frozenset({"action.succeeded", "action.failed"})
_ALWAYS_READ = frozenset({*DEFINITION_TYPES, *_OUTCOMES, "flow-run.created"})
_FACTS_CACHE = 20_000
_RUNS_CACHE = 1_000
_RUN_EVENTS = 64
"""A run's stream is kept from the log (for the templates' `flow_run`) up to this many events;
a longer one, or one with events of types the engine does not read (a gap), is read when a
firing needs it."""
LEASE = 15.0
"""Seconds an engine's lease lasts unless renewed (a dead engine's is taken over after that)."""
_RENEW_AFTER = 2 / 3
"""Renew a lease when less than this part of its time is left (with the default: every 5 s)."""


class EngineStateMoved(Exception):
    """Another process wrote the engine's state: this one's batch is dropped, its state reloaded."""


class AutomationEngine:
    def __init__(
        self,
        store: EventStore,
        engine: Engine,
        dispatcher: Dispatcher,
        *,
        name: str = "automations",
        clock: Callable[[], float] = time.time,
        settle: float = 1.0,
        start: Cursor | str | None = None,
        lease: float = LEASE,
    ) -> None:
        self.store = store
        self.lease = lease
        self.db = engine
        self.dispatcher = dispatcher
        self.name = name
        self.clock = clock
        self.settle = settle
        """Seconds behind the clock that a tick looks: an event may be committed a little
        after it occurred, and a window must not expire before it is read."""
        self.start = Cursor.parse(start)
        """Where an engine with no saved state begins (its consumer's start): automations act
        on what happens from then on, not on the history before (the backtest is for that)."""
        self._lock = threading.RLock()
        self._facts: OrderedDict[str, RunFacts] = OrderedDict()
        self._runs: OrderedDict[str, list[StoredEvent]] = OrderedDict()
        """The streams of the runs created since the state was loaded, as read from the log."""
        self._loaded = False
        self._recovered = False
        self.cursor = self.start
        self.owner = uuid4().hex
        self._lease_until: datetime | None = None
        migrate(engine)

    # -- state -----------------------------------------------------------------------------

    def load(self) -> None:
        """Read the saved state and the automations as of its cursor."""
        with self._lock:
            with self.db.connect() as conn:
                row = conn.execute(select(engine_state).where(engine_state.c.name == self.name)).first()
            self.cursor = Cursor.parse(row.cursor) if row else self.start
            self.revision = int(row.revision) if row else 0
            saved: dict[str, Any] = orjson.loads(row.state) if row else {}
            self.automations: dict[UUID, Automation] = {}
            for event in self.store.iter_all(types=list(DEFINITION_TYPES)):
                if Cursor.parse(event.cursor) > self.cursor:
                    break
                apply_definition(self.automations, event)
            self.evaluator = Evaluator(self.automations.values())
            self.evaluator.restore(saved.get("triggers", {}))
            self.pending: dict[str, tuple[str, int]] = {
                key: (str(value[0]), int(value[1])) for key, value in saved.get("pending", {}).items()
            }
            self._restored = set(self.pending)
            self._runs.clear()  # another engine may have handled events of theirs meanwhile
            self._loaded, self._recovered = True, False

    def _save(self) -> bool:
        state = orjson.dumps({"triggers": self.evaluator.snapshot(), "pending": self.pending}).decode()
        values = {"cursor": str(self.cursor), "revision": self.revision + 1, "state": state, "updated": utcnow()}
        with write_transaction(self.db) as conn:
            if self.revision == 0:
                exists = conn.execute(select(engine_state.c.revision).where(engine_state.c.name == self.name)).first()
                if exists is None:
                    conn.execute(engine_state.insert().values(name=self.name, **values))
                    self.revision += 1
                    return True
            moved = conn.execute(
                engine_state.update()
                .where(engine_state.c.name == self.name, engine_state.c.revision == self.revision)
                .values(**values)
            )
        if moved.rowcount != 1:
            return False
        self.revision += 1
        return True

    def hold(self) -> bool:
        """Take or renew this engine's lease; False while another live engine holds it."""
        now = utcnow()
        if self._lease_until is not None and now < self._lease_until - timedelta(seconds=self.lease * _RENEW_AFTER):
            return True
        until = now + timedelta(seconds=self.lease)
        try:
            with write_transaction(self.db) as conn:
                row = conn.execute(
                    select(engine_state.c.owner, engine_state.c.lease_until).where(engine_state.c.name == self.name)
                ).first()
                if row is None:
                    conn.execute(engine_state.insert().values(
                        name=self.name, cursor=str(self.start), revision=0, state="{}", updated=now,
                        owner=self.owner, lease_until=until,
                    ))
                elif row.owner in (None, self.owner) or row.lease_until is None or row.lease_until < now:
                    conn.execute(
                        engine_state.update()
                        .where(engine_state.c.name == self.name)
                        .values(owner=self.owner, lease_until=until)
                    )
                else:
                    self._lease_until = None
                    return False
        except IntegrityError:  # another engine created the row first
            self._lease_until = None
            return False
        if self._lease_until is None or (row is not None and row.owner != self.owner):
            self._loaded = False  # taken over (or first held): read what the last holder left
        self._lease_until = until
        return True

    def release(self) -> None:
        """Give the lease up (on a clean stop), so that another engine takes over at once."""
        if self._lease_until is None:
            return
        with write_transaction(self.db) as conn:
            conn.execute(
                engine_state.update()
                .where(engine_state.c.name == self.name, engine_state.c.owner == self.owner)
                .values(owner=None, lease_until=None)
            )
        self._lease_until = None

    # -- feeding ---------------------------------------------------------------------------

    def types(self) -> list[str]:
        """The event types (names and `*` patterns) the engine needs to read, as of its state."""
        with self._lock:
            if not self._loaded:
                self.load()
            return sorted(_ALWAYS_READ | self.evaluator.patterns())

    def handle(self, events: Sequence[StoredEvent], upto: Cursor | str | None = None) -> int:
        """Evaluate a batch of events (log order); return the firings it caused."""
        return self.take(events, upto)[0]

    def take(self, events: Sequence[StoredEvent], upto: Cursor | str | None = None) -> tuple[int, Cursor | None]:
        """`handle`, and the event it stopped after when a definition widened `types()` (None
        when it went to `upto`): the events past it are to be read again with the new filter."""
        with self._lock:
            if not self._loaded:
                self.load()
            fresh = [e for e in events if Cursor.parse(e.cursor) > self.cursor]
            end = Cursor.parse(upto) if upto is not None else (Cursor.parse(events[-1].cursor) if events else self.cursor)
            if not fresh and end <= self.cursor:
                return 0, None
            stopped = None
            firings: list[tuple[Firing, StoredEvent | None]] = []
            for event in fresh:
                before = self.evaluator.patterns() if event.type in DEFINITION_TYPES else None
                self._note(event)
                run = self._run_facts(event) if self.evaluator.needs_run(event) else None
                firings.extend((firing, event) for firing in self.evaluator.observe(event, run))
                if before is not None and not self.evaluator.patterns() <= before:
                    stopped = end = Cursor.parse(event.cursor)
                    break
            self.cursor = max(self.cursor, end)
            return self._commit(firings), stopped

    def tick(self, now: float | None = None) -> int:
        """Let time pass up to `now` (default: the clock) less `settle`; return the firings.
        Call it only once the log has been handled up to its head."""
        with self._lock:
            if not self._loaded:
                self.load()
            moment = (self.clock() if now is None else now) - self.settle
            if moment <= self.evaluator.now:
                count = 0
            else:
                count = self._commit([(firing, None) for firing in self.evaluator.advance(moment)])
            if not self._recovered:
                self._recover()
            return count

    def _note(self, event: StoredEvent) -> None:
        if event.type in DEFINITION_TYPES:
            changed = apply_definition(self.automations, event)
            if isinstance(changed, Automation):
                self.evaluator.put(changed)
            elif isinstance(changed, UUID):
                self.evaluator.remove(changed)
        elif event.type in _OUTCOMES:
            self.pending.pop(str(event.data.get("action_id")), None)
        elif event.type == "flow-run.created":
            run_id = run_id_of(event)
            if run_id is not None and event.stream == flow_run_stream(run_id):
                self._remember(run_id, RunFacts.from_created(run_id, event.data))  # no read when it fails
                self._runs[run_id] = [event]
                if len(self._runs) > _RUNS_CACHE:
                    self._runs.popitem(last=False)
                return
        self._follow_run(event)

    def _follow_run(self, event: StoredEvent) -> None:
        """Add `event` to its run's stream, if that run's stream is kept since its creation."""
        run_id = run_id_of(event)
        known = self._runs.get(run_id) if run_id is not None and event.stream == flow_run_stream(run_id) else None
        if known is None or event.stream_position <= known[-1].stream_position:
            return  # not kept, or handled again after a reload
        if event.stream_position == known[-1].stream_position + 1 and len(known) < _RUN_EVENTS:
            known.append(event)
        else:  # a gap, or too long to keep: read it when a firing needs it
            del self._runs[str(run_id)]

    def _run_facts(self, event: StoredEvent) -> RunFacts | None:
        run_id = run_id_of(event)
        if run_id is None:
            return None
        if run_id in self._facts:
            self._facts.move_to_end(run_id)
            return self._facts[run_id]
        first = self.store.read_stream(flow_run_stream(run_id), limit=1)
        created = first[0].data if first and first[0].type == "flow-run.created" else None
        if created is None:  # an unknown run may be created later: look again then
            return None
        facts = RunFacts.from_created(run_id, created)
        self._remember(run_id, facts)
        return facts

    def _remember(self, run_id: str, facts: RunFacts) -> None:
        self._facts[run_id] = facts
        if len(self._facts) > _FACTS_CACHE:
            self._facts.popitem(last=False)

    # -- firing ----------------------------------------------------------------------------

    def _commit(self, firings: list[tuple[Firing, StoredEvent | None]]) -> int:
        by_stream: dict[str, list[NewEvent]] = {}
        runs = _RunViews(self.store, self._runs)  # several rules firing on one event read and fold its run once
        for firing, cause in firings:
            by_stream.setdefault(automation_stream(firing.automation.id), []).extend(self._events(firing, cause, runs))
        appends = [StreamAppend(stream, events) for stream, events in by_stream.items()]
        stored = self.store.append_streams(appends) if appends else []
        actions = [e for e in stored if e.type == "action.triggered"]
        for action in actions:
            self.pending[str(action.id)] = (action.stream, action.stream_position)
        if not self._save():
            self._loaded = False
            self._lease_until = None
            raise EngineStateMoved(f"automation engine {self.name!r}: another process wrote its state; reloading")
        if actions:
            self.dispatcher.submit(actions)
        return len(firings)

    def _events(self, firing: Firing, cause: StoredEvent | None, runs: _RunViews) -> list[NewEvent]:
        if cause is not None and firing.fired.posture == "reactive":
            event = cause
        else:
            event = self._read(firing.fired.event.stream, firing.fired.event.stream_position)
        run_id = run_id_of(event)
        flow_run = runs.as_of(run_id, event) if run_id is not None else None
        context = template_context(event, flow_run, firing.automation)
        return firing_events(firing.id, firing.automation, firing.fired, event, run_id, context)

    def _read(self, stream: str, position: int) -> StoredEvent:
        [event] = self.store.read_stream(stream, from_version=position, limit=1)
        return event

    def _recover(self) -> None:
        """Deliver the actions triggered before a restart whose outcome is still not in the log.

        Only those the saved state held (fired by an earlier process); each is checked in its
        own stream, which shows every outcome recorded so far, even one the feed shows later."""
        self._recovered = True
        actions = []
        for key in self._restored & set(self.pending):
            stream, position = self.pending[key]
            after = self.store.read_stream(stream, from_version=position)
            if any(e.type in _OUTCOMES and e.data.get("action_id") == key for e in after):
                self.pending.pop(key, None)
            else:
                actions.append(after[0])
        self._restored.clear()
        if actions:
            _log.info("automation engine %r: delivering %d action(s) pending since before a restart", self.name, len(actions))
            self.dispatcher.submit(actions)


class _RunViews:
    """The runs that one commit's firings show their templates, each stream read and each view
    folded once (the templates' sandbox cannot change a view, so rules firing on one event
    share it)."""

    def __init__(self, store: EventStore, kept: Mapping[str, list[StoredEvent]]) -> None:
        self._store = store
        self._kept = kept
        self._streams: dict[str, list[StoredEvent]] = {}
        self._views: dict[tuple[str, UUID], dict[str, Any] | None] = {}

    def as_of(self, run_id: str, event: StoredEvent) -> dict[str, Any] | None:
        key = (run_id, event.id)
        if key not in self._views:
            if run_id not in self._streams:
                kept = self._kept.get(run_id)
                self._streams[run_id] = list(kept) if kept is not None else self._store.read_stream(flow_run_stream(run_id))
            self._views[key] = run_as_of(run_id, self._streams[run_id], event)
        return self._views[key]
