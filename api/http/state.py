"""What the requests of one server process need: opened in the app's lifespan, closed after.

Background work (the feed's tail reader, the projection loop, and later the automation engine,
the scheduler, ...) does not live here: it is a `Service` (services.py) that the lifespan's
`Supervisor` starts and stops.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ledgerflow.api.http.feed import FeedHub
from ledgerflow.api.http.metrics import Metrics
from ledgerflow.api.http.offers import RunOffers
from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.api.keys import ApiKey, ApiKeys, Scope
from ledgerflow.events import EventStore, Settings, open_store
from ledgerflow.events.grouping import AppendGroups
from ledgerflow.events.reserved import RunStreamCache
from ledgerflow.notifications.blocks import BlockStore
from ledgerflow.notifications.secretbox import SecretBox
from ledgerflow.notifications.tables import migrate as migrate_notifications
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import engine_of

__all__ = ["ServerState", "prepare_database"]


@dataclass(frozen=True)
class ServerState:
    api: ApiSettings
    store: EventStore
    read_model: ReadModel
    """Read only: the projection service keeps it current, so a GET never folds the log."""
    keys: ApiKeys
    metrics: Metrics
    hub: FeedHub
    blocks: BlockStore
    """Notification credentials, encrypted with the server's secret key."""
    appends: AppendGroups
    """`POST /api/events`: concurrent requests' appends written together (events/grouping.py)."""
    offers: RunOffers
    """Runs of work pools handed to a worker and not claimed yet (shared by every server process)."""
    run_streams: RunStreamCache = field(default_factory=RunStreamCache)
    """Run streams as `POST /api/events` last judged them (events/reserved.py)."""
    runner_key: ApiKey = field(default_factory=lambda: ApiKey(
        id="runner", name="built-in runner", scope=Scope.WORKER, created=datetime.now(UTC), revoked=None))
    """Who presents `api.runner_key`: the built-in runner's run processes."""

    @classmethod
    def open(
        cls, settings: Settings, api: ApiSettings, metrics: Metrics, loop: asyncio.AbstractEventLoop
    ) -> ServerState:
        """Open the store and what stands on it; `loop` is the one the feed's clients run on."""
        store = open_store(settings.store_url)
        try:
            read_model = ReadModel(store, catch_up=False)
            keys = ApiKeys(engine_of(store))
            hub = FeedHub(store, loop, api.feed_window)
            blocks = BlockStore(engine_of(store), SecretBox.from_settings(settings))
            offers = RunOffers(engine_of(store))
        except BaseException:
            store.close()
            raise
        return cls(api, store, read_model, keys, metrics, hub, blocks, AppendGroups(store), offers)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is (the built-in runner's included); None for
        unknown or revoked keys."""
        if hmac.compare_digest(secret.encode(), self.api.runner_key.encode()):
            return self.runner_key
        return self.keys.authenticate(secret)

    def close(self) -> None:
        self.store.close()


def prepare_database(settings: Settings) -> None:
    """Create or migrate every table a server uses (log, projections, keys, offers, blocks), then close.

    Server processes starting together on a fresh database would race to create them."""
    store = open_store(settings.store_url)
    try:
        ReadModel(store, catch_up=False)
        ApiKeys(engine_of(store))
        RunOffers(engine_of(store))
        migrate_notifications(engine_of(store))
    finally:
        store.close()
