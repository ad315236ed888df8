"""The background services of one server process, and where the next ones plug in.

Each is a `ledgerflow.events.service.Service` (start/stop); the app's lifespan hands the
list `services(state, api)` returns to a `Supervisor`, which starts them in order and stops
them in reverse. Requests never wait on them: they read what the services keep current.

The services: the feed's tail reader, the projection runner, the automation engine
(notifications/service.py). A new one (the scheduler, the crash monitor, ...) is a constructor here, an `ApiSettings.run_<name>` flag that tests can turn off, and one line
in `services()`.
"""

from __future__ import annotations

from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.api.http.state import ServerState
from ledgerflow.events import EventStoreError
from ledgerflow.events.service import LoopService, Service
from ledgerflow.notifications.service import automation_service
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["PROJECT_EVERY", "projection_service", "services"]

PROJECT_EVERY = 0.05
"""Seconds between the projection runner's catch-ups. Following the log's wake-ups instead
re-reads the log after every append; under ingest load one catch-up takes many appends' events."""

_DATABASE_DOWN_PAUSE = 1.0


def projection_service(read_model: ReadModel) -> LoopService:
    """Keeps the read model's projections current with the log."""

    def step() -> float | None:
        try:
            read_model.runner.catch_up()
        except EventStoreError:  # the database went away: try again soon, without a traceback
            return _DATABASE_DOWN_PAUSE
        return None

    return LoopService("projections", step, PROJECT_EVERY)


def services(state: ServerState, api: ApiSettings) -> list[Service]:
    """The services to run, in start order: the feed first (requests use it), then the rest."""
    found: list[Service] = [state.hub]
    if api.run_projections:
        found.append(projection_service(state.read_model))
    if api.run_automations:
        found.append(automation_service(state.store, state.blocks))
    return found
