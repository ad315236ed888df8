"""The background services of one server process, and where the next ones plug in.

Each is a `ledgerflow.events.service.Service` (start/stop); the app's lifespan hands the
list `services(state, api)` returns to a `Supervisor`, which starts them in order and stops
them in reverse. Requests never wait on them: they read what the services keep current.

The services: the feed's tail reader, the projection runner, the crash monitor (api/liveness.py),
the scheduler, the late-run marker, the built-in runner, the automation engine
(notifications/service.py). A new one is a constructor here, an `ApiSettings.run_<name>` flag
that tests can turn off, and one line in `services()`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.api.http.state import ServerState
from ledgerflow.api.liveness import end_dead
from ledgerflow.events import EventStoreError, Settings, StoredEvent, StreamAppend
from ledgerflow.events.liveness import this_process
from ledgerflow.events.model import utcnow
from ledgerflow.events.reserved import check_appends
from ledgerflow.events.runs import mark_late
from ledgerflow.events.service import LoopService, Service
from ledgerflow.events.store import EventStore
from ledgerflow.projections import queries
from ledgerflow.notifications.service import automation_service
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.execute import claim_due_runs
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings
from ledgerflow.runtime.writer import RECONNECT_SECONDS
from ledgerflow.runtime.spool import Spool

__all__ = [
    "BUILTIN_POOLS",
    "PROJECT_EVERY",
    "crash_monitor_service",
    "forward_spool",
    "late_runs_service",
    "projection_service",
    "runner_service",
    "scheduler_service",
    "services",
]

BUILTIN_POOLS: tuple[str | None, ...] = ("default", None)
"""The work pools whose runs the server executes itself: `default`, and runs naming none."""

PROJECT_EVERY = 0.05
"""Seconds between the projection runner's catch-ups. Following the log's wake-ups instead
re-reads the log after every append; under ingest load one catch-up takes many appends' events."""

_DATABASE_DOWN_PAUSE = 1.0
_log = logging.getLogger("ledgerflow.server")


def projection_service(read_model: ReadModel) -> LoopService:
    """Keeps the read model's projections current with the log."""

    def step() -> float | None:
        try:
            read_model.runner.catch_up()
        except EventStoreError:  # the database went away: try again soon, without a traceback
            return _DATABASE_DOWN_PAUSE
        return None

    return LoopService("projections", step, PROJECT_EVERY)


def runner_service(state: ServerState, api: ApiSettings, settings: Settings) -> RunLauncher:
    """The built-in runner: due requested runs of the built-in pools, each in a child process.

    On PostgreSQL the run processes talk to this server (remote mode, as a worker's do), not
    to the database: a hundred runs at once hold no connection of their own, where each used
    to open its own and max_connections (100 by default) refused them. On SQLite, which has
    no such bound, they write to the file themselves: a hundred runs due at once start ~4x
    sooner than through this one process (`python -m bench.scheduling`)."""

    prefetch = timedelta(seconds=api.runner_prefetch_seconds)

    def due(limit: int) -> list[str]:
        # Runs due within the prefetch window start now and wait in their process for their
        # time: the flow is loaded by then, so the run starts when it is due, not seconds later.
        try:
            return queries.due_flow_runs(state.read_model, pools=BUILTIN_POOLS, now=utcnow() + prefetch,
                                         limit=min(limit, queries.MAX_PAGE))
        except EventStoreError:  # the database went away: nothing is due until it is back
            return []

    through_server = engine_of(state.store).dialect.name != "sqlite"
    child = ChildSettings(str(settings.home), settings.store_url, api.own_url if through_server else None,
                          api.runner_key if through_server and api.auth else None, nice=api.runner_nice)
    # The runs its children wait with are claimed here, on the store, in one append when due.
    return RunLauncher(due, child, concurrency=api.runner_concurrency,
                       claim=lambda claims: claim_due_runs(state.store, claims))


class _Checked:
    """The store behind the rules `POST /api/events` applies to what comes from outside."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        return self._store.append_streams(check_appends(self._store, appends))


def forward_spool(store: EventStore, settings: Settings) -> None:
    """Store the events that remote runs on this home kept in its spool: the built-in runner's
    runs go on for a grace period while the server shuts down, when it no longer takes requests."""
    report = Spool.in_home(Path(settings.home)).forward(_Checked(store))
    if report.delivered or report.refused or report.waiting:
        _log.info("spooled events of runs: %d stored, %d refused, %d still waiting (%s)",
                  report.delivered, report.refused, report.waiting, report.error or "")


def scheduler_service(store: EventStore, settings: Settings) -> LoopService:
    """Materialises the next runs of every active schedule (runtime/scheduler.py)."""
    scheduler = Scheduler(store, SchedulerSettings.of(settings), store=store)

    def step() -> float | None:
        try:
            scheduler.tick()
        except EventStoreError:
            return _DATABASE_DOWN_PAUSE
        return None

    return LoopService("scheduler", step, settings.scheduler_interval_seconds)


LATE_EVERY = 1.0


def late_runs_service(read_model: ReadModel, settings: Settings) -> LoopService:
    """Marks `Late` the requested runs still Scheduled `late_after_seconds` past their time."""
    grace = timedelta(seconds=settings.late_after_seconds)

    def step() -> float | None:
        try:
            for run_id, due in queries.late_flow_runs(read_model, before=utcnow() - grace):
                mark_late(read_model.store, run_id, due)
        except EventStoreError:
            return _DATABASE_DOWN_PAUSE
        return None

    return LoopService("late-runs", step, LATE_EVERY)


CHECKS_PER_HEARTBEAT = 4
"""How often per heartbeat interval the crash monitor looks: a silent run is ended within
`STALE_AFTER` + 1/4 of its interval (events/liveness.py), inside the promised 2 intervals."""
CRASH_CHECK_AT_LEAST_EVERY = 1.0
"""Seconds: runs may beat faster than the server's own setting says (one indexed query each)."""


def crash_monitor_service(read_model: ReadModel, settings: Settings) -> LoopService:
    """Ends `Crashed` the runs whose heartbeats stopped (and `Cancelled` the cancelling ones),
    looking as often as the shortest heartbeat interval of the live runs asks."""
    here = this_process()
    every = min(settings.heartbeat_seconds / CHECKS_PER_HEARTBEAT, CRASH_CHECK_AT_LEAST_EVERY)
    # Remote runs' heartbeats come through this server (and land in the database): while either
    # was down none could. A run not heard from since both work again is given the time a remote
    # run takes to notice (it tries the server every RECONNECT_SECONDS, each try up to a second).
    reconnect = timedelta(seconds=2 * RECONNECT_SECONDS)
    listening_since, database_down = utcnow(), False

    def step() -> float | None:
        nonlocal listening_since, database_down
        try:
            runs = queries.live_flow_runs(read_model)
            if database_down:
                listening_since, database_down = utcnow(), False
            end_dead(read_model.store, runs, here, listening_since, reconnect)
        except EventStoreError:
            database_down = True
            return _DATABASE_DOWN_PAUSE
        return min([every, *(run.heartbeat_seconds / CHECKS_PER_HEARTBEAT for run in runs)])

    return LoopService("crash-monitor", step, every)


def services(state: ServerState, api: ApiSettings, settings: Settings) -> list[Service]:
    """The services to run, in start order: the feed first (requests use it), then the rest."""
    found: list[Service] = [state.hub]
    if api.run_projections:
        found.append(projection_service(state.read_model))
    if api.run_crash_monitor:
        found.append(crash_monitor_service(state.read_model, settings))
    if api.run_scheduler:
        found.append(scheduler_service(state.store, settings))
        found.append(late_runs_service(state.read_model, settings))
    if api.run_runner:
        found.append(runner_service(state, api, settings))
    if api.run_automations:
        found.append(automation_service(state.store, state.blocks))
    return found
