"""`serve(...)` / `Flow.serve(...)`: a long-lived process that registers its deployments, then
schedules and executes their runs itself until interrupted (Ctrl-C or SIGTERM), as Prefect's
`serve` does, with no server and no worker needed (though the log may be a server's).

Inside: the scheduler (runtime/scheduler.py) for these deployments only, and the built-in
runner (runtime/runner.py) fed by `DeploymentRuns`, which follows the log's `flow-run.created`
events for runs of these deployments (scheduled, or requested by `ledgerflow deployment run`,
the API or `run_deployment`) and hands over the due ones, soonest first. A run still waiting
`late_after_seconds` past its time is marked `Late`. Served deployments use the work pool
`serve` unless told otherwise, so a server's own runner leaves their runs to this process.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ledgerflow.events import Settings, load_settings
from ledgerflow.events.cursor import START, Cursor
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import RunNotFound, mark_late, read_flow_run
from ledgerflow.events.service import Supervisor
from ledgerflow.runtime import config
from ledgerflow.runtime.deployments import RunnerDeployment
from ledgerflow.runtime.eventlog import EventLog
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings

__all__ = ["DeploymentRuns", "Served", "serve"]

_WAITING = ("Scheduled", "Late")


@dataclass
class _Candidate:
    run_id: str
    due: datetime | None = None
    """Its scheduled time when last read (None: not read yet)."""


class DeploymentRuns:
    """The waiting runs of some deployments, from the log (no projections in the runtime)."""

    def __init__(self, log: EventLog, deployments: Iterable[str], *, late_after: float = 60.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.log = log
        self.deployments = set(deployments)
        self.late_after = timedelta(seconds=late_after)
        self.clock = clock
        self.cursor: Cursor = START
        self.candidates: dict[str, _Candidate] = {}

    def _follow(self) -> None:
        while True:
            page = self.log.read_page(after=self.cursor, limit=1000, types=["flow-run.created"])
            for event in page.events:
                if str(event.data.get("deployment_id")) in self.deployments:
                    run_id = str(event.data["flow_run_id"])
                    self.candidates.setdefault(run_id, _Candidate(run_id))
            moved = Cursor.parse(page.next_after)
            if moved <= self.cursor or len(page.events) < 1000:
                self.cursor = max(moved, self.cursor)
                return
            self.cursor = moved

    def due(self, limit: int) -> list[str]:
        """Ids of waiting runs whose time has come, soonest first (at most `limit`)."""
        self._follow()
        now = self.clock()
        ready: list[tuple[datetime, str]] = []
        for candidate in list(self.candidates.values()):
            if candidate.due is not None and candidate.due > now:
                continue  # read before and not due yet: no need to read it again
            try:
                state = read_flow_run(self.log, candidate.run_id).state
            except RunNotFound:
                continue
            if state is None or state.name not in _WAITING:
                if state is not None and state.type.value in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                    del self.candidates[candidate.run_id]
                continue
            candidate.due = state.scheduled_time or now
            if candidate.due <= now:
                ready.append((candidate.due, candidate.run_id))
                if state.name == "Scheduled" and candidate.due + self.late_after <= now:
                    mark_late(self.log, candidate.run_id, now=now)
        return [run_id for _, run_id in sorted(ready)[:limit]]


class Served:
    """The services of one `serve` process, startable and stoppable (tests use it directly)."""

    def __init__(self, deployments: Iterable[RunnerDeployment], *, limit: int | None = None,
                 settings: Settings | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings or load_settings()
        runtime = config.current()
        self.deployments = list(deployments)
        for deployment in self.deployments:
            deployment.apply()
        ids = [str(d.id) for d in self.deployments]
        self.scheduler = Scheduler(runtime.log, SchedulerSettings.of(self.settings), store=runtime.store, clock=clock,
                                   only=ids, name=f"serve:{','.join(sorted(ids))}"[:200])
        self.runs = DeploymentRuns(runtime.log, ids, late_after=self.settings.late_after_seconds, clock=clock)
        child = ChildSettings(str(self.settings.home), self.settings.store_url, self.settings.api_url,
                              self.settings.api_key)
        self.launcher = RunLauncher(self.runs.due, child, concurrency=limit or 8, name="serve-runner")
        self.supervisor = Supervisor([self.scheduler.service(), self.launcher])

    def start(self) -> None:
        self.supervisor.start()

    def stop(self) -> None:
        self.supervisor.stop()


def serve(*deployments: RunnerDeployment, limit: int | None = None, **_: Any) -> None:
    """Register `deployments`, then schedule and execute their runs until interrupted."""
    served = Served(deployments, limit=limit)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    names = ", ".join(d.name for d in served.deployments)
    print(f"serving {names}; Ctrl-C to stop", flush=True)
    served.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
