"""Two scheduler processes on one PostgreSQL database, a 1-second interval schedule, three
minutes of it on a fast clock that both share: every slot has exactly one run, and two runners
racing for the runs execute each exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ledgerflow.events import open_store
from ledgerflow.events.deployments import apply_deployment, spec_from
from ledgerflow.events.model import utcnow
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from tests.api.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
SPAN = 180.0
"""Seconds of schedule the clock goes through."""
SPEED = 15.0
"""Schedule seconds per real second."""

SCHEDULER = """
import sys, time
from datetime import datetime, timedelta
from ledgerflow.events import open_store
from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings

url, origin, real_start, speed, span = sys.argv[1], datetime.fromisoformat(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

def clock():
    return origin + timedelta(seconds=min(span, (time.time() - real_start) * speed))

with open_store(url) as store:
    scheduler = Scheduler(store, SchedulerSettings(horizon=timedelta(seconds=5), min_runs=3, max_runs=50),
                          store=store, clock=clock)
    while clock() < origin + timedelta(seconds=span):
        scheduler.tick()
        time.sleep(0.05)
    scheduler.tick()
print("requested", scheduler.requested)
"""


@pytest.mark.postgres
def test_two_scheduler_processes_one_run_per_slot_each_executed_once(postgres_schema_url: str, tmp_path: Path) -> None:
    url = postgres_schema_url
    with open_store(url) as store:
        apply_deployment(store, spec_from({
            "flow_name": "double", "name": "every-second", "entrypoint": "tests/deployments/flows.py:double",
            "working_dir": str(REPO), "parameters": {"n": 1}, "schedules": [{"kind": "interval", "interval": 1}],
        }))
        # The schedule's clock starts SPAN seconds ago and runs SPEED times faster than real time:
        # every slot is due when it is requested, so the runners execute them as they come.
        import time

        wait_until(lambda: bool(store.read_all(types=["deployment.created"])))  # visible to readers
        origin = utcnow().replace(microsecond=0) - timedelta(seconds=SPAN)
        real_start = time.time()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        schedulers = [
            subprocess.Popen([sys.executable, "-c", SCHEDULER, url, origin.isoformat(), str(real_start), str(SPEED),
                              str(SPAN)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        stores = [open_store(url) for _ in range(2)]
        launchers = []
        def due_from(rm: ReadModel) -> Callable[[int], list[str]]:
            return lambda n: queries.due_flow_runs(rm, pools=("default",), limit=min(n, 500))

        for index, each in enumerate(stores):
            launchers.append(RunLauncher(due_from(ReadModel(each)), ChildSettings(str(tmp_path / "home"), url),
                                         concurrency=3, interval=0.05, name=f"runner-{index}"))
        for launcher in launchers:
            launcher.start()
        try:
            for process in schedulers:
                out, err = process.communicate(timeout=SPAN / SPEED + 120)
                assert process.returncode == 0, err

            def by_slot() -> dict[str, list[str]]:
                found: dict[str, list[str]] = {}
                for event in store.read_all(limit=100_000, types=["flow-run.Scheduled"]):
                    found.setdefault(str(event.data["scheduled_time"]), []).append(str(event.data["flow_run_id"]))
                return found

            last = origin + timedelta(seconds=SPAN)
            wait_until(lambda: max(map(datetime.fromisoformat, by_slot())) >= last, timeout=60)
            slots = by_slot()
            assert all(len(ids) == 1 for ids in slots.values())
            times = sorted(map(datetime.fromisoformat, slots))
            assert times == [times[0] + timedelta(seconds=n) for n in range(len(times))]
            # A scheduler starts with the first slot after it sees the deployment (on PostgreSQL a
            # moment after it was written: readers wait for the cluster's older transactions).
            assert len(times) >= SPAN * 0.5  # the processes start (import) while the clock runs

            due = [run for when, ids in slots.items() if datetime.fromisoformat(when) <= utcnow() for run in ids]

            def finished() -> bool:
                ended = {str(e.data["flow_run_id"]) for e in store.read_all(limit=100_000, types=["flow-run.Completed"])}
                return set(due) <= ended

            wait_until(finished, timeout=300)
        finally:
            for launcher in launchers:
                launcher.stop()
            for each in stores:
                each.close()
        claims = Counter(str(e.data["flow_run_id"]) for e in store.read_all(limit=100_000, types=["flow-run.Pending"]))
        runs = Counter(str(e.data["flow_run_id"]) for e in store.read_all(limit=100_000, types=["flow-run.Running"]))
        assert all(claims[run] == 1 and runs[run] == 1 for run in due)
        assert sum(launcher.launched for launcher in launchers) >= len(due)
