"""What one server process holds while it runs: opened in the app's lifespan, closed after."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from ledgerflow.api.feed import FeedHub
from ledgerflow.api.keys import ApiKeys
from ledgerflow.api.metrics import Metrics
from ledgerflow.api.settings import ApiSettings
from ledgerflow.events import EventStore, EventStoreError, Settings, open_store
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import engine_of

__all__ = ["ServerState"]

log = logging.getLogger("ledgerflow.api")

_PROJECT_EVERY = 0.05
"""Seconds between the projection runner's catch-ups. Following the log's wake-ups instead
re-reads the log after every append; under ingest load one catch-up takes many appends' events."""


@dataclass
class ServerState:
    settings: Settings
    api: ApiSettings
    store: EventStore
    read_model: ReadModel
    keys: ApiKeys
    metrics: Metrics
    hub: FeedHub | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _runner: threading.Thread | None = None

    @classmethod
    def open(cls, settings: Settings, api: ApiSettings, metrics: Metrics) -> ServerState:
        store = open_store(settings.store_url)
        try:
            read_model = ReadModel(store, catch_up=True)
            keys = ApiKeys(engine_of(store))
        except BaseException:
            store.close()
            raise
        return cls(settings, api, store, read_model, keys, metrics)

    def start(self) -> None:
        """Start the feed's tail reader and (if configured) the projection runner."""
        self.hub = FeedHub(self.store, self.api.feed_window)
        self.hub.start()
        if self.api.run_projections:
            self._runner = threading.Thread(target=self._project, name="ledgerflow-projections", daemon=True)
            self._runner.start()

    def _project(self) -> None:
        pause = _PROJECT_EVERY
        while not self._stop.wait(pause):
            pause = _PROJECT_EVERY
            try:
                self.read_model.runner.catch_up()
            except EventStoreError:  # the database went away: queries catch up when it is back
                pause = 1.0
            except Exception:  # a bug must not end the process's projections for good
                log.exception("the projection runner failed; retrying in 5 s")
                pause = 5.0

    def close(self) -> None:
        self._stop.set()
        if self.hub is not None:
            self.hub.stop()
        if self._runner is not None:
            self._runner.join(timeout=5)
        self.store.close()
