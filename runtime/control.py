"""What the log says about a running flow run that its engine did not write itself.

Another actor may write into a running flow run's stream: `Cancelling` from the API or the
CLI, `Crashed` from the crash monitor. The engine learns of such events two ways:

- the writer appends a run's events with the stream version it expects; when another writer
  got there first, the writer reads what was added, hands it to the run's `FlowRunControl`,
  and drops the run's state changes the rules now refuse (see runtime/writer.py);
- a `ControlWatcher` per process reads the feed for those event types every
  `cancel_check_seconds`, so a run that writes nothing for a while (one long task) still hears
  of a cancel in time.

A run asked to stop starts no more task runs, cancels its async task runs, lets sync ones
finish their current call, and ends `Cancelled` (or stays `Suspended` when that was the word).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from ledgerflow.events import EventStoreError, StoredEvent
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.states import STATE_NAMES, StateType
from ledgerflow.events.transitions import Accepted, Decision, RunState, decide, evolve
from ledgerflow.runtime.eventlog import EventLog

__all__ = ["CONTROL_TYPES", "ControlWatcher", "FlowRunCancelled", "FlowRunControl", "run_cancellable"]

_log = logging.getLogger("ledgerflow.runs")

CONTROL_TYPES = ("flow-run.Cancelling", "flow-run.Cancelled", "flow-run.Crashed", "flow-run.Suspended")
"""State changes other actors write into a running flow run's stream (`Suspended`: from
outside, by `suspend_flow_run(flow_run_id=...)`; the run stops and is executed again once resumed)."""
T = TypeVar("T")
_STOPPING = frozenset({StateType.CANCELLING, StateType.CANCELLED, StateType.CRASHED, StateType.PAUSED})


class FlowRunCancelled(BaseException):
    """Raised inside a flow run's own code when the run was asked to stop. A BaseException, so
    that `except Exception` in flow code does not swallow it (like asyncio.CancelledError)."""


class FlowRunControl:
    """A running flow run's state as the engine knows it, and whether it must stop."""

    def __init__(self, stream: str, state: RunState | None, parent: FlowRunControl | None = None) -> None:
        self.stream = stream
        self.state = state
        self.parent = parent
        self.reason: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._own: set[UUID] = set()
        self._seen: set[UUID] = set()
        self._async: set[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = set()
        self._recording: set[asyncio.Task[Any]] = set()

    # -- the rule book --------------------------------------------------------------------

    def propose(
        self, name: str, now: datetime, scheduled: datetime | None = None, pause_expiration: datetime | None = None,
    ) -> Decision:
        """Ask `decide` whether the run may move to `name`; on acceptance it has."""
        with self._lock:
            proposed = RunState(STATE_NAMES[name], name, scheduled, pause_expiration)
            decision = decide(self.state, proposed, now)
            if isinstance(decision, Accepted):
                self.state = proposed
            return decision

    def own(self, event_id: UUID) -> None:
        """An event the engine wrote itself (the watcher must not take it for someone else's)."""
        self._own.add(event_id)

    # -- other writers --------------------------------------------------------------------

    def observe(self, events: Iterable[StoredEvent]) -> None:
        """Events other actors appended to the run's stream, in stream order."""
        for event in events:
            if event.id in self._own or event.id in self._seen or not event.type.startswith("flow-run."):
                continue
            self._seen.add(event.id)
            with self._lock:
                self.state = evolve(self.state, event)
            if self.state is not None and self.state.type in _STOPPING:
                message = event.data.get("message")
                self.request_stop(f"the run was set {event.type.partition('.')[2]}" + (f": {message}" if message else ""))

    def request_stop(self, reason: str) -> None:
        if self._stop.is_set():
            return
        self.reason = reason
        self._stop.set()
        _log.info("Flow run stream %s: %s; stopping", self.stream, reason)
        for loop, task in list(self._async):
            loop.call_soon_threadsafe(task.cancel)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or (self.parent is not None and self.parent.stopping)

    def check(self) -> None:
        """Raise FlowRunCancelled when the run must stop (called where work would start)."""
        if self.stopping:
            raise FlowRunCancelled(self.reason or (self.parent.reason if self.parent else None) or "cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when the run must stop; True if it must."""
        if self.parent is None:
            self._stop.wait(max(seconds, 0))
            return self.stopping
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, 0.05))  # a parent's stop is polled: it has its own event
        return self.stopping

    # -- async work ---------------------------------------------------------------------

    def cancel_on_stop(self, task: asyncio.Task[Any]) -> None:
        """Cancel `task` (an async flow body or task run call) when the run must stop."""
        for control in self._chain():
            control._async.add((task.get_loop(), task))
        if self.stopping:
            task.cancel()

    def forget(self, task: asyncio.Task[Any]) -> None:
        for control in self._chain():
            control._async.discard((task.get_loop(), task))

    @contextmanager
    def recording_task_run(self) -> Iterator[None]:
        """An async task run in the current asyncio task: until it has written its end, a stopping
        run waits for it (a gather hands the first CancelledError on before its siblings record)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        for control in self._chain():
            control._recording.add(task)
        try:
            yield
        finally:
            for control in self._chain():
                control._recording.discard(task)

    def _chain(self) -> Iterator[FlowRunControl]:
        """This run's control and its parents': a stop of any of them stops this run."""
        control: FlowRunControl | None = self
        while control is not None:
            yield control
            control = control.parent

    def unfinished(self) -> list[asyncio.Task[Any]]:
        """Async work of this run (and its subflows) in this event loop that was cancelled or has
        yet to record its task run's end; never the caller's own asyncio task."""
        loop, current = asyncio.get_running_loop(), asyncio.current_task()
        work = {task for _, task in list(self._async)} | set(self._recording)
        return [task for task in work if not task.done() and task is not current and task.get_loop() is loop]


async def run_cancellable(control: FlowRunControl, call: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Await `call` in a task of its own that a stop cancels. Cancelling the awaiting task
    itself would leave asyncio a pending cancel that can surface after the run recorded its
    end; cancelling a child task only raises CancelledError here."""
    task = asyncio.ensure_future(call)
    control.cancel_on_stop(task)
    try:
        if timeout is None:
            return await task
        return await asyncio.wait_for(task, timeout)
    finally:
        control.forget(task)


class ControlWatcher:
    """Reads the feed for CONTROL_TYPES and hands each event to the run whose stream it is in.

    One per process, started by the first run and idle while no run is active; it keeps its
    cursor when idle, so nothing written in between is missed.
    """

    def __init__(self, log: EventLog, interval: float) -> None:
        self._log = log
        self.interval = interval
        self._runs: dict[str, FlowRunControl] = {}
        self._lock = threading.Lock()
        self._active = threading.Event()
        self._cursor: str | Cursor | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._woken = threading.Event()

    @property
    def cursor(self) -> str | None:
        """Where the next poll reads from (None before the first run is watched)."""
        return None if self._cursor is None else str(self._cursor)

    def start_after(self, cursor: str) -> None:
        """Read from `cursor` on, known to precede whatever will concern the runs (a worker
        hands its own to a run's process, which then needs not ask the log for its head).
        While no run is watched a later cursor moves the reader forward: a process that waited
        between runs skips what the log gathered meanwhile."""
        with self._lock:
            if self._cursor is None or (not self._runs and Cursor.parse(cursor) > Cursor.parse(str(self._cursor))):
                self._cursor = cursor

    def watch(self, control: FlowRunControl) -> None:
        with self._lock:
            if self._cursor is None:
                # Before the run's first event is written: whatever concerns it comes later.
                self._cursor = self._head()
            self._runs[control.stream] = control
            self._active.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ledgerflow-control", daemon=True)
                self._thread.start()

    def unwatch(self, control: FlowRunControl) -> None:
        with self._lock:
            if self._runs.get(control.stream) is control:
                del self._runs[control.stream]
            if not self._runs:
                self._active.clear()

    def close(self) -> None:
        self._closed = True
        self._woken.set()  # a closing process does not wait out the interval
        self._active.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._closed:
            self._active.wait()
            # Wait before reading: a run that ends within one interval costs the log no read
            # (whatever others wrote into its stream meanwhile also stops its next append).
            self._woken.wait(self.interval)
            if self._closed:
                return
            if not self._active.is_set():
                continue
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the log may be briefly unreachable
                _log.debug("control watcher could not read the log: %s", exc)

    def _head(self) -> str | None:
        """The log's head; None while the log does not answer (a server that is down knows of
        no run of ours, so nothing written before the first poll that does answer concerns us)."""
        try:
            return self._log.head()
        except EventStoreError:
            return None

    def poll(self) -> None:
        if self._cursor is None:
            self._cursor = self._log.head()
        page = self._log.read_page(after=self._cursor, limit=500, types=list(CONTROL_TYPES))
        for event in page.events:
            control = self._runs.get(event.stream)
            if control is not None:
                control.observe([event])
        self._cursor = page.next_after
