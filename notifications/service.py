"""The automation engine as a `Service`: in the server under its supervisor, or alone with
`ledgerflow automations run`.

Three parts: the durable consumer "automations" (events/consumer.py) follows the log and hands
each batch to the engine; a clock loop lets time pass for proactive triggers, once the engine
has handled the log up to its head; the dispatcher delivers what fires.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ledgerflow.events.consumer import Batch, Consumer
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.service import LoopService
from ledgerflow.events.store import EventStore
from ledgerflow.events.transactions import engine_of
from ledgerflow.notifications.actions import ActionRunner
from ledgerflow.notifications.blocks import BlockStore
from ledgerflow.notifications.dispatch import Dispatcher, RetryPolicy, record_outcomes
from ledgerflow.notifications.engine import AutomationEngine
from ledgerflow.notifications.secretbox import SecretBox

__all__ = ["CONSUMER", "READ_EVERY", "AutomationService", "automation_service"]

CONSUMER = "automations"
READ_EVERY = 0.05
"""Seconds between catch-ups with the log (as the projection runner): under a heavy write load
one catch-up takes many appends' events, where following every wake-up would re-read the log
after each append. None: follow the wake-ups."""


class AutomationService:
    def __init__(
        self, store: EventStore, engine: AutomationEngine, consumer: Consumer, *, tick_every: float = 1.0,
        read_every: float | None = READ_EVERY,
    ) -> None:
        self.store = store
        self.engine = engine
        self.consumer = consumer
        self._follow = consumer.service(interval=read_every)
        self._clock = LoopService("automations-clock", self._tick, tick_every)

    @property
    def name(self) -> str:
        return "automations"

    def start(self) -> None:
        self.engine.dispatcher.start()
        self.engine.load()
        self.consumer.ensure()
        self._follow.start()
        self._clock.start()

    def stop(self) -> None:
        self._clock.stop()
        self._follow.stop()
        self.engine.dispatcher.stop()

    def _tick(self) -> None:
        # Only once the engine has the log up to its head: a window must not expire while the
        # event that closes it in time is still unread.
        if self.engine.cursor >= Cursor.parse(self.store.head()):
            self.engine.tick()


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
    read_every: float | None = READ_EVERY,
) -> AutomationService:
    """The engine over `store`, reading blocks with `keys` (a box, or the blocks themselves)."""
    blocks = keys if isinstance(keys, BlockStore) else BlockStore(engine_of(store), keys)
    dispatcher = Dispatcher(
        lambda clients: ActionRunner(store, blocks.get, clients).run,
        lambda outcomes: record_outcomes(store.append_streams, outcomes),
        concurrency=concurrency, per_target=per_target, retry=retry,
    )
    start = store.head()
    engine = AutomationEngine(store, blocks.engine, dispatcher, clock=clock, settle=settle, start=start)

    def handle(batch: Batch) -> None:
        engine.handle(batch.events, batch.upto)

    consumer = Consumer(store, CONSUMER, handle, start=start)
    return AutomationService(store, engine, consumer, tick_every=tick_every, read_every=read_every)
