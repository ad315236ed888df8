"""Deliveries: concurrent, bounded, retried with exponential backoff, outcomes recorded.

The dispatcher runs an asyncio loop on a thread of its own, with one aiohttp session whose
keep-alive connections every HTTP sender shares. At most `concurrency` actions are carried out
at once, and at most
`per_target` for one block (or one action type without a block), so a slow or dead webhook
holds only its own slots: a storm of failures for one target never queues every other
target's deliveries behind it.
A retryable failure waits `RetryPolicy.delay(n)` (outside the slots) and tries again, up to
`attempts` times; then the action is recorded failed, not lost.

Outcomes (`action.succeeded` / `action.failed`) are recorded in batches by `record`, called on
a worker thread; an action leaves the in-flight set only once its outcome is recorded, so
submitting it again meanwhile does not deliver it twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiohttp

from ledgerflow.events.model import StoredEvent, StreamAppend
from ledgerflow.notifications.errors import ActionRefused, DeliveryError
from ledgerflow.notifications.firing import outcome_appends, outcome_event

__all__ = ["Dispatcher", "Outcome", "RetryPolicy", "record_outcomes"]

_log = logging.getLogger("ledgerflow.notifications")

RunAction = Callable[[StoredEvent], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Tries in all, the first included."""
    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...)."""
        return float(min(self.max_delay, self.first_delay * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class Outcome:
    action: StoredEvent
    succeeded: bool
    attempts: int
    detail: dict[str, Any] | None = None
    error: str | None = None


class Dispatcher:
    def __init__(
        self,
        make_runner: Callable[[aiohttp.ClientSession], RunAction],
        record: Callable[[Sequence[Outcome]], None],
        *,
        concurrency: int = 64,
        per_target: int = 4,
        retry: RetryPolicy = RetryPolicy(),
        grace: float = 5.0,
        name: str = "automations-dispatch",
    ) -> None:
        if concurrency < 1 or per_target < 1:
            raise ValueError("concurrency and per_target must be at least 1")
        self._make_runner = make_runner
        self._record = record
        self._concurrency = concurrency
        self._per_target = per_target
        self.retry = retry
        self._grace = grace
        self._name = name
        self._lock = threading.Condition()
        self._in_flight: set[UUID] = set()
        self._early: list[StoredEvent] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def name(self) -> str:
        return self._name

    # -- from other threads ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_loop, name=f"ledgerflow-{self._name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout: float = 15.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout)
        self._thread = None

    def submit(self, actions: Iterable[StoredEvent]) -> int:
        """Deliver these `action.triggered` events (those in flight already are skipped);
        return how many were taken."""
        fresh = []
        with self._lock:
            for action in actions:
                if action.id not in self._in_flight:
                    self._in_flight.add(action.id)
                    fresh.append(action)
        if fresh:
            if self._loop is None:
                with self._lock:
                    self._early.extend(fresh)
            else:
                self._loop.call_soon_threadsafe(self._accept, fresh)
        return len(fresh)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted action's outcome is recorded."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._in_flight, timeout)

    # -- on the loop -----------------------------------------------------------------------

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stopping = asyncio.Event()
        self._flush = asyncio.Event()
        self._slots = asyncio.Semaphore(self._concurrency)
        self._targets: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._closing = False
        # The slots bound the connections: the per-target gates keep a slow target to its own.
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self._serve(loop, session)
        self._loop = None

    async def _serve(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        self._runner = self._make_runner(session)
        flusher = asyncio.create_task(self._flusher())
        self._loop = loop
        with self._lock:
            early, self._early = self._early, []
        self._accept(early)
        self._ready.set()
        await self._stopping.wait()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self._grace)
            for task in pending:  # delivered again after a restart: no outcome was recorded
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._flush.set()
        self._closing = True
        await flusher

    def _accept(self, actions: list[StoredEvent]) -> None:
        for action in actions:
            task = asyncio.create_task(self._deliver(action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, action: StoredEvent) -> None:
        target = str(action.data.get("block") or action.data.get("action_type"))
        gate = self._targets.setdefault(target, asyncio.Semaphore(self._per_target))
        attempt = 0
        while True:
            attempt += 1
            async with gate, self._slots:
                try:
                    detail = await self._runner(action)
                    outcome = Outcome(action, True, attempt, detail=detail)
                    break
                except ActionRefused as exc:
                    outcome = Outcome(action, False, attempt, error=str(exc))
                    break
                except DeliveryError as exc:
                    if not exc.retryable or attempt >= self.retry.attempts:
                        outcome = Outcome(action, False, attempt, error=str(exc))
                        break
                except Exception as exc:  # noqa: BLE001 - a sender's bug must not stop the others
                    _log.exception("delivering action %s failed", action.id)
                    if attempt >= self.retry.attempts:
                        outcome = Outcome(action, False, attempt, error=f"{type(exc).__name__}: {exc}")
                        break
            await asyncio.sleep(self.retry.delay(attempt))
        self._outcomes.append(outcome)
        self._flush.set()

    async def _flusher(self) -> None:
        pause = 0.0
        while True:
            await self._flush.wait()
            self._flush.clear()
            batch, self._outcomes = self._outcomes, []
            if batch:
                try:
                    await asyncio.to_thread(self._record, batch)
                except Exception:  # noqa: BLE001 - the store may be down: keep them and retry
                    _log.exception("recording %d action outcomes failed; retrying", len(batch))
                    self._outcomes[:0] = batch
                    pause = min(max(pause * 2, 0.1), 5.0)
                    await asyncio.sleep(pause)
                    self._flush.set()
                    if not self._closing:
                        continue
                    return
                pause = 0.0
                with self._lock:
                    for outcome in batch:
                        self._in_flight.discard(outcome.action.id)
                    self._lock.notify_all()
            if self._closing and not self._outcomes:
                return


def record_outcomes(append_streams: Callable[[Sequence[StreamAppend]], object], outcomes: Sequence[Outcome]) -> None:
    """Append `action.succeeded` / `action.failed` for `outcomes`, in one transaction."""
    append_streams(outcome_appends(
        (o.action, outcome_event(o.action, succeeded=o.succeeded, attempts=o.attempts, detail=o.detail, error=o.error))
        for o in outcomes
    ))
