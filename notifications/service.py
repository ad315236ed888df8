"""The automation engine as a `Service`: in the server under its supervisor, or alone with
`ledgerflow automations run`.

One loop, every `read_every` seconds while this process holds the engine's lease: the durable
consumer "automations" (events/consumer.py) catches up with the log, reading the types the
engine asks for, and hands each batch to the engine; then, every `tick_every` seconds, time passes for proactive triggers. The dispatcher
delivers what fires.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ledgerflow.events.consumer import Batch, Consumer
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import EventStoreError
from ledgerflow.events.service import LoopService
from ledgerflow.events.store import EventStore
from ledgerflow.events.transactions import engine_of
from ledgerflow.notifications.actions import ActionRunner
from ledgerflow.notifications.blocks import BlockStore
from ledgerflow.notifications.dispatch import Dispatcher, RetryPolicy, record_outcomes
from ledgerflow.notifications.engine import AutomationEngine, EngineStateMoved
from ledgerflow.notifications.secretbox import SecretBox

__all__ = ["CONSUMER", "READ_EVERY", "AutomationService", "automation_service"]

CONSUMER = "automations"
READ_EVERY = 0.05
"""Seconds between catch-ups with the log (as the projection runner): under a heavy write load
one catch-up takes many appends' events, where following every wake-up would re-read the log
after each append."""
WAIT_FOR_LEASE = 2.0


class AutomationService:
    def __init__(
        self, store: EventStore, engine: AutomationEngine, consumer: Consumer, *, tick_every: float = 1.0,
        read_every: float = READ_EVERY,
    ) -> None:
        self.store = store
        self.engine = engine
        self.consumer = consumer
        self.tick_every = tick_every
        self._ticked = 0.0
        self._loop = LoopService("automations", self._step, read_every)

    @property
    def name(self) -> str:
        return "automations"

    def start(self) -> None:
        self.engine.dispatcher.start()
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self.engine.dispatcher.stop()
        try:
            self.engine.release()
        except EventStoreError:  # the database is gone: the lease runs out by itself
            pass

    def _step(self) -> float | None:
        if not self.engine.hold():
            return WAIT_FOR_LEASE  # another process runs the engine: take over if it stops renewing
        try:
            self.consumer.catch_up()
        except EngineStateMoved:
            return None  # handled again, from the checkpoint, with the state reloaded
        # Caught up with the head just now: time may pass (a window must not expire while the
        # event that closes it in time is still unread).
        now = time.monotonic()
        if now - self._ticked >= self.tick_every:
            self._ticked = now
            self.engine.tick()
        return None


def automation_service(
    store: EventStore,
    keys: SecretBox | BlockStore,
    *,
    retry: RetryPolicy = RetryPolicy(),
    concurrency: int = 64,
    per_target: int = 4,
    clock: Callable[[], float] = time.time,
    settle: float = 1.0,
    tick_every: float = 1.0,
    read_every: float = READ_EVERY,
) -> AutomationService:
    """The engine over `store`, reading blocks with `keys` (a box, or the blocks themselves)."""
    blocks = keys if isinstance(keys, BlockStore) else BlockStore(engine_of(store), keys)
    dispatcher = Dispatcher(
        lambda session: ActionRunner(store, blocks.get, session).run,
        lambda outcomes: record_outcomes(store.append_streams, outcomes),
        concurrency=concurrency, per_target=per_target, retry=retry,
    )
    start = store.head()
    engine = AutomationEngine(store, blocks.engine, dispatcher, clock=clock, settle=settle, start=start)

    def handle(batch: Batch) -> Cursor | None:
        return engine.take(batch.events, batch.upto)[1]

    consumer = Consumer(store, CONSUMER, handle, types=engine.types, start=start)
    return AutomationService(store, engine, consumer, tick_every=tick_every, read_every=read_every)
