"""Ending the runs whose process is gone, for the server's crash monitor and for a CLI process
that opens the store (events/liveness.py has the rules).

The runs to look at come from the runs projection (one indexed query over the runs Running or
Cancelling); each one the projection shows dead is checked again on its own stream before its
verdict is appended, so a projection that lags never ends a live run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ledgerflow.events import StoredEvent
from ledgerflow.events.liveness import LiveRun, ProcessIdentity, end_if_dead, this_process, verdict
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import RunLog
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["end_dead", "end_dead_runs"]


def end_dead(
    log: RunLog, runs: Iterable[LiveRun], here: ProcessIdentity, listening_since: datetime | None = None,
    reconnect_allowance: timedelta = timedelta(0),
) -> list[StoredEvent]:
    """Append the verdict of each of `runs` that is dead; return the flow runs' verdict events.
    `listening_since`, `reconnect_allowance`: see events.liveness.verdict."""
    now = utcnow()
    ended = []
    for run in runs:
        if verdict(run, now, here, listening_since=listening_since, reconnect_allowance=reconnect_allowance) is not None:
            event = end_if_dead(log, run.flow_run_id, here, listening_since=listening_since,
                                reconnect_allowance=reconnect_allowance)
            if event is not None:
                ended.append(event)
    return ended


def end_dead_runs(read_model: ReadModel, here: ProcessIdentity | None = None) -> list[StoredEvent]:
    """Catch the projections up, then end the runs they show dead (seen from `here`, by
    default this process, whose own runs are never judged)."""
    return end_dead(read_model.store, queries.live_flow_runs(read_model), here or this_process())
