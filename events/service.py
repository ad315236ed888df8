"""Long-running services and the supervisor that starts and stops them.

Everything that reacts to the log in a server process (the projection runner, the feed's tail
reader, the automation engine, the scheduler, the crash monitor, the built-in runner) is a
`Service`: `start()` returns once it runs in the background, `stop()` returns once it has
stopped. A `Supervisor` starts services in order and stops them in reverse order; the CLI can
also run any one service alone. `LoopService` is the common shape: call `step()` every
`interval` seconds on a daemon thread, surviving errors with a back-off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["LoopService", "Service", "Supervisor"]

_log = logging.getLogger("ledgerflow.services")


class Service(Protocol):
    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LoopService:
    """Calls `step()` every `interval` seconds until stopped.

    `step()` may return the seconds to wait before the next call (None: `interval`). An
    exception is logged and the loop goes on after `error_pause` seconds: a bug or a database
    outage must not end the service for good.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], float | None],
        interval: float,
        *,
        error_pause: float = 5.0,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._step = step
        self.interval = interval
        self.error_pause = error_pause
        self._on_stop = on_stop
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def stopping(self) -> threading.Event:
        """Set once `stop()` was called: a long step can watch it to return early."""
        return self._stopping

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=f"ledgerflow-{self._name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        pause = 0.0
        while not self._stopping.wait(pause):
            try:
                wanted = self._step()
                pause = self.interval if wanted is None else wanted
            except Exception:  # noqa: BLE001 - logged; the service keeps going
                _log.exception("service %s failed; retrying in %.0f s", self._name, self.error_pause)
                pause = self.error_pause

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._on_stop is not None:
            self._on_stop()


class Supervisor:
    """Starts services in order, stops them in reverse; a service that fails to start stops
    the ones already started before the error is raised."""

    def __init__(self, services: Sequence[Service] = ()) -> None:
        self.services: list[Service] = list(services)
        self._started: list[Service] = []

    def add(self, service: Service) -> None:
        self.services.append(service)

    def start(self) -> None:
        for service in self.services:
            try:
                service.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(service)

    def stop(self) -> None:
        while self._started:
            service = self._started.pop()
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - stop the others regardless
                _log.exception("service %s did not stop cleanly", service.name)
