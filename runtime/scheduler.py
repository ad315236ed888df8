"""The scheduler: materialises the next runs of every active schedule as requested runs.

Every `interval` seconds (`tick`) it folds the deployment events it has not seen into its index
of deployments, then, for each active schedule of each live deployment, requests the runs of
the slots in its horizon (`events.schedules.window`: the next `horizon`, at least `min_runs`,
at most `max_runs`) that it has not requested yet. A slot's run id derives from (deployment,
schedule_id, slot time) and is appended with the store's duplicate-id rule, so two schedulers,
a restart or an unchanged redeploy request each slot once.

When a deployment changes (an edited schedule, new parameters, paused, deleted), the schedules
whose `schedule_id` is gone get their future unstarted runs cancelled; the new ones are
materialised at the next tick. On a store this reaction is a durable consumer of the
`deployment.*` events (`Consumer`, at least once, idempotent by derived event ids), so a change
made while no scheduler ran is still handled. A scheduler that requested runs from a
deployment version that changed meanwhile cancels those itself (read back after appending).

The clock is injectable: tests and the benchmark drive time by hand.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from ledgerflow.events import Settings, StoredEvent, StreamAppend
from ledgerflow.events.consumer import Batch, Consumer
from ledgerflow.events.cursor import START, Cursor
from ledgerflow.events.deployments import (
    Deployment,
    deployment_stream,
    evolve_deployment,
    fold_deployment,
    merged_parameters,
    run_request,
    slot_run_id,
)
from ledgerflow.events.ids import derived_id
from ledgerflow.events.model import ANY, EventMeta, NewEvent, trusted, utcnow
from ledgerflow.events.gcpause import cycle_collection_paused
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import RunLog, RunNotFound, RunStateConflict, propose_flow_run_state, read_flow_run
from ledgerflow.events.schedules import Schedule, slots, window
from ledgerflow.events.service import LoopService
from ledgerflow.events.store import EventStore
from ledgerflow.runtime.eventlog import EventLog

__all__ = ["DeploymentIndex", "Scheduler", "SchedulerSettings", "cancel_removed_slots"]

_log = logging.getLogger("ledgerflow.scheduler")
_TYPES = ["deployment.*"]
_BATCH_RUNS = 1000
_WAITING = ("Scheduled", "Late")


@dataclass(frozen=True)
class SchedulerSettings:
    horizon: timedelta = timedelta(hours=1)
    min_runs: int = 3
    max_runs: int = 100
    interval: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> SchedulerSettings:
        return cls(timedelta(seconds=settings.scheduler_horizon_seconds), settings.scheduler_min_runs,
                   settings.scheduler_max_runs, settings.scheduler_interval_seconds)


class DeploymentIndex:
    """Every deployment (or those in `only`), folded from the log's `deployment.*` events."""

    def __init__(self, log: EventLog, only: Iterable[str] | None = None) -> None:
        self.log = log
        self.only = set(only) if only is not None else None
        self.cursor: Cursor = START
        self.deployments: dict[str, Deployment] = {}

    def refresh(self) -> list[StoredEvent]:
        """Fold what the log has past the cursor; the events folded."""
        seen: list[StoredEvent] = []
        while True:
            page = self.log.read_page(after=self.cursor, limit=1000, types=_TYPES)
            for event in page.events:
                ident = str(event.data.get("deployment_id", ""))
                if self.only is not None and ident not in self.only:
                    continue
                state = evolve_deployment(self.deployments.get(ident), event)
                if state is not None:
                    self.deployments[ident] = state
                seen.append(event)
            moved = Cursor.parse(page.next_after)
            if moved <= self.cursor:
                return seen
            self.cursor = moved
            if len(page.events) < 1000:
                return seen

    def live(self) -> list[Deployment]:
        return [d for d in self.deployments.values() if not d.deleted]


@dataclass
class _Track:
    """What this process requested of one schedule: slots ahead of now, the last, the next."""

    ahead: deque[datetime] = field(default_factory=deque)
    last: datetime | None = None
    next: datetime | None = None


def cancel_removed_slots(
    log: RunLog, before: Deployment, after: Deployment | None, now: datetime, settings: SchedulerSettings,
) -> int:
    """Cancel the future unstarted runs of the schedules `before` had and `after` has not;
    how many were cancelled. The slots looked at are those any scheduler with these settings
    could have requested by `now`."""
    kept = after.schedule_ids() if after is not None else set()
    cancelled = 0
    for schedule_id, schedule in before.active_schedules():
        if schedule_id in kept:
            continue
        for slot in window(schedule, now, settings.horizon, settings.min_runs, settings.max_runs):
            cancelled += _cancel_slot(log, slot_run_id(before.id, schedule_id, slot), now)
    return cancelled


def _cancel_slot(log: RunLog, run_id: UUID, now: datetime) -> int:
    try:
        history = read_flow_run(log, run_id)
    except RunNotFound:
        return 0
    if history.state is None or history.state.name not in _WAITING:
        return 0
    try:
        propose_flow_run_state(
            log, run_id, "Cancelled", message="its schedule changed", actor="scheduler", ignore_schedule=True,
            event_id=derived_id("slot-cancelled", run_id), now=now,
        )
    except RunStateConflict:
        return 0  # claimed meanwhile: it runs
    return 1


class Scheduler:
    """Requests the runs of the deployments' schedules ahead of time; see the module docstring.

    `log`: where runs are requested (the store or the API server). `store`: the store, when
    this process has one, for the durable consumer of deployment changes. `only`: the
    deployment ids to schedule (None: all)."""

    def __init__(
        self,
        log: EventLog,
        settings: SchedulerSettings = SchedulerSettings(),
        *,
        store: EventStore | None = None,
        clock: Callable[[], datetime] = utcnow,
        only: Iterable[str] | None = None,
        name: str = "scheduler",
    ) -> None:
        self.log = log
        self.settings = settings
        self.clock = clock
        self.index = DeploymentIndex(log, only)
        self.tracks: dict[str, _Track] = {}
        self._templates: dict[str, tuple[Deployment, StreamAppend]] = {}
        self.requested = 0
        self.cancelled = 0
        self._primed = False
        self.consumer = (
            Consumer(store, name, self._react, types=_TYPES, start=store.head()) if store is not None else None
        )

    # -- reacting to deployment changes ------------------------------------------------------

    def _react(self, batch: Batch) -> None:
        for event in batch.events:
            self._changed(event)

    def _changed(self, event: StoredEvent) -> None:
        if event.type == "deployment.created" and event.stream_position == 1:
            return
        history = self.log.read_stream(event.stream, 1, event.stream_position)
        before = fold_deployment(history[:-1])
        if before is None:
            return
        self.cancelled += cancel_removed_slots(self.log, before, fold_deployment(history), self.clock(), self.settings)

    # -- one tick ----------------------------------------------------------------------------

    def tick(self) -> int:
        """Take in deployment changes, then request the slots coming into the horizon; return
        how many runs were requested."""
        # A first tick builds 120,000 events for 1,000 minutely deployments: none forms a cycle,
        # and the collector would rescan them all every few thousand allocations.
        with cycle_collection_paused():
            return self._tick()

    def _tick(self) -> int:
        fresh = self.index.refresh()
        if self.consumer is not None:
            self.consumer.catch_up()
        elif self._primed:
            for event in fresh:
                self._changed(event)
        self._primed = True
        now = self.clock()
        chunk: list[tuple[Deployment, str, datetime, StreamAppend]] = []
        live: set[str] = set()
        requested = 0
        for deployment in self.index.live():
            for schedule_id, schedule in deployment.active_schedules():
                live.add(schedule_id)
                for slot in self._due(schedule_id, schedule, now):
                    chunk.append((deployment, schedule_id, slot, self._request(deployment, schedule_id, schedule, slot)))
                    if len(chunk) >= _BATCH_RUNS:
                        requested += self._append(chunk, now)
                        chunk = []
        if chunk:
            requested += self._append(chunk, now)
        for gone in set(self.tracks) - live:
            del self.tracks[gone]
            self._templates.pop(gone, None)
        self.requested += requested
        return requested

    def _append(self, chunk: list[tuple[Deployment, str, datetime, StreamAppend]], now: datetime) -> int:
        self.log.append_streams([append for *_, append in chunk])
        self._recheck(chunk, now)
        return len(chunk)

    def _due(self, schedule_id: str, schedule: Schedule, now: datetime) -> list[datetime]:
        track = self.tracks.setdefault(schedule_id, _Track())
        while track.ahead and track.ahead[0] <= now:
            track.ahead.popleft()
        settings = self.settings
        if track.last is not None and track.last > now:
            if track.next is not None and track.next > now + settings.horizon and len(track.ahead) >= settings.min_runs:
                return []
            if len(track.ahead) >= settings.max_runs:
                return []
        missed: list[datetime] = []
        if track.last is not None and track.last <= now:
            # Slots that came and went since the last tick (a slow tick, a database outage):
            # requested late rather than never. After a restart a scheduler starts at now.
            missed = slots(schedule, track.last, now, settings.max_runs)
            track.last = None
        room = settings.max_runs - len(track.ahead)
        found = missed + window(schedule, now, settings.horizon, settings.min_runs, settings.max_runs,
                                after=track.last)[:room]
        if found:
            track.ahead.extend(found)
            track.last = found[-1]
        if track.last is not None:
            following = slots(schedule, track.last, None, 1)
            track.next = following[0] if following else None
        return found

    def _request(self, deployment: Deployment, schedule_id: str, schedule: Schedule, slot: datetime) -> StreamAppend:
        """The request of one slot's run. The first of a schedule is built and validated by
        `run_request`; the others copy it with their own ids and times (60,000 slots an hour
        for 1,000 minutely deployments: validating each again costs more than appending it)."""
        template = self._templates.get(schedule_id)
        run_id = slot_run_id(deployment.id, schedule_id, slot)
        text = str(run_id)
        if template is None or template[0] is not deployment:
            parameters = merged_parameters(deployment.spec, schedule.parameters) if schedule.parameters else dict(
                deployment.spec.parameters)
            append = run_request(
                deployment, parameters, flow_run_id=run_id, scheduled_time=slot, actor="scheduler",
                expected_version=ANY, extra={"schedule_id": schedule_id},
            )
            self._templates[schedule_id] = (deployment, append)
            return append
        created, scheduled = template[1].events
        meta = trusted(EventMeta, {"correlation_id": run_id, "causation_id": None, "actor": "scheduler"})
        occurred = utcnow()
        # The ids derive from the run id's text, as `run_request` derives them from the UUID.
        events = [
            trusted(NewEvent, {"type": "flow-run.created", "id": derived_id("flow-run.created", text), "meta": meta,
                               "occurred": occurred, "data": {
                                   **created.data, "flow_run_id": text, "root_flow_run_id": text,
                                   "run_name": f"{deployment.spec.flow_name}-{run_id.hex[-8:]}"}}),
            trusted(NewEvent, {"type": "flow-run.Scheduled", "id": derived_id("flow-run.Scheduled", text),
                               "meta": meta, "occurred": occurred,
                               "data": {**scheduled.data, "flow_run_id": text, "scheduled_time": slot.isoformat()}}),
        ]
        return StreamAppend(f"flow-run-{text}", events, ANY)

    def _recheck(self, chunk: Sequence[tuple[Deployment, str, datetime, StreamAppend]], now: datetime) -> None:
        """Runs requested from a deployment version that has changed since: cancel those whose
        schedule is gone (the change's own reaction may have looked before they existed)."""
        versions = {d.id: d for d, *_ in chunk}
        for ident, deployment in versions.items():
            newer = self.log.read_stream(deployment_stream(ident), deployment.version + 1)
            if not newer:
                continue
            current = fold_deployment(self.log.read_stream(deployment_stream(ident)))
            kept = current.schedule_ids() if current is not None else set()
            for d, schedule_id, slot, _ in chunk:
                if d.id == ident and schedule_id not in kept:
                    self.cancelled += _cancel_slot(self.log, slot_run_id(ident, schedule_id, slot), now)

    def service(self) -> LoopService:
        return LoopService("scheduler", self._step, self.settings.interval)

    def _step(self) -> None:
        self.tick()

