"""Heartbeats: while a flow run is active, its process appends `flow-run.heartbeat` to its
stream every `LEDGERFLOW_HEARTBEAT_SECONDS`, through the run's writer (a list append here; the
writer's thread commits it). A run whose heartbeats stop is ended `Crashed` by the server's
monitor or the next ledgerflow process on its host (events/liveness.py).

One daemon thread per process beats for all its active runs; it idles while there are none.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ledgerflow.events.liveness import HEARTBEAT

if TYPE_CHECKING:
    from ledgerflow.runtime.context import FlowRunContext

__all__ = ["Heartbeats"]


class Heartbeats:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._runs: dict[str, FlowRunContext] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, context: FlowRunContext) -> None:
        """Beat for `context`'s run from now on (its `Running` event was the first beat)."""
        with self._lock:
            self._runs[context.stream] = context
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="ledgerflow-heartbeat", daemon=True)
                self._thread.start()

    def stop(self, context: FlowRunContext) -> None:
        """No more beats for the run: once this returns, none is emitted after what it emits next."""
        with self._lock:
            if self._runs.get(context.stream) is context:
                del self._runs[context.stream]

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._closed.wait(self.interval):
            with self._lock:  # held while emitting, so a stopped run's end is never followed by a beat
                for context in self._runs.values():
                    context.emit(HEARTBEAT, {"flow_run_id": context.flow_run_id})
