"""Seeded run histories with chosen times, for backtests and the engine's tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ledgerflow.events import Cursor, EventStore, NewEvent, StoredEvent
from ledgerflow.events.model import new_id
from tests.notifications.receivers import wait_until

__all__ = ["Runs"]


class Runs:
    """Appends a flow run's events as the runtime would, at chosen times after `base`."""

    def __init__(self, store: EventStore, base: datetime) -> None:
        self.store = store
        self.base = base
        self.last: StoredEvent | None = None

    def settled(self) -> None:
        """Wait until readers of the log's feed see everything appended here (on PostgreSQL
        an event shows in the feed once every older transaction of the cluster has ended)."""
        last = self.last
        if last is not None:
            wait_until(lambda: Cursor.parse(self.store.head()) >= Cursor.parse(last.cursor), what="the feed shows the runs")

    def at(self, seconds: float) -> datetime:
        return self.base + timedelta(seconds=seconds)

    def created(self, seconds: float, flow: str, *, run_id: str | None = None, **extra: Any) -> str:
        run_id = run_id or str(new_id())
        data = {"flow_run_id": run_id, "flow_name": flow, "run_name": f"{flow}-{run_id[-6:]}", **extra}
        [self.last] = self.store.append(f"flow-run-{run_id}", [NewEvent(type="flow-run.created", data=data, occurred=self.at(seconds))])
        return run_id

    def state(self, run_id: str, name: str, seconds: float, message: str | None = None) -> StoredEvent:
        state_type = {"Running": "RUNNING", "Completed": "COMPLETED", "Failed": "FAILED", "Crashed": "CRASHED",
                      "Scheduled": "SCHEDULED", "Pending": "PENDING"}[name]
        data: dict[str, Any] = {"flow_run_id": run_id, "state_type": state_type, "state_name": name}
        if message is not None:
            data["message"] = message
            data["error"] = {"type": "RuntimeError", "message": message}
        [stored] = self.store.append(f"flow-run-{run_id}", [NewEvent(type=f"flow-run.{name}", data=data, occurred=self.at(seconds))])
        self.last = stored
        return stored

    def failed_run(self, seconds: float, flow: str, message: str = "boom", **extra: Any) -> tuple[str, StoredEvent]:
        run_id = self.created(seconds, flow, **extra)
        self.state(run_id, "Running", seconds)
        return run_id, self.state(run_id, "Failed", seconds, message)
