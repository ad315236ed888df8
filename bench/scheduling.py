"""Benchmark of the scheduler and the built-in runner.

    python -m bench.scheduling [--deployments 1000] [--due 100] [--concurrency 100] [--db sqlite,postgres]

For each database it prints:
- materialise: 1,000 deployments with one-minute schedules, the time one scheduler takes to
  request the next hour of slots (60,000 runs, 120,000 events) from an empty start;
- duplicates: two schedulers (two processes' worth of stores, in threads) doing the same from
  scratch at once on a fresh database: runs per slot beyond one (must be 0);
- start delay: 100 runs due at the same moment, requested ahead of it (as the scheduler does)
  and executed by the built-in runner as the server composes it (the runs projection's due
  query with the 10 s prefetch window): from the due time to each run's `Running`, p50 / p99 /
  max.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
import tempfile

from bench._common import percentile, temp_postgres_url, temp_sqlite_url
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import apply_deployment, request_deployment_run, spec_from
from ledgerflow.events.model import utcnow
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings

REPO = Path(__file__).resolve().parents[1]
PREFETCH = 10.0
"""The built-in runner's default prefetch window (ApiSettings.runner_prefetch_seconds)."""
HOUR = SchedulerSettings(horizon=timedelta(hours=1), min_runs=3, max_runs=100)


def _deploy(store: EventStore, count: int) -> None:
    for n in range(count):
        apply_deployment(store, spec_from({
            "flow_name": "noop", "name": f"d{n:04d}", "entrypoint": "bench/scheduling.py:noop",
            "working_dir": str(REPO), "schedules": [{"kind": "cron", "cron": "* * * * *"}],
        }))


def _wait_visible(store: EventStore, scheduler: Scheduler, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(scheduler.index.deployments) < count and time.monotonic() < deadline:
        scheduler.index.refresh()
        time.sleep(0.05)


def materialise(url: str, count: int) -> tuple[float, int]:
    with open_store(url) as store:
        _deploy(store, count)
        scheduler = Scheduler(store, HOUR)
        _wait_visible(store, scheduler, count)
        started = time.perf_counter()
        requested = scheduler.tick()
        return time.perf_counter() - started, requested


def duplicates(url: str, count: int) -> tuple[int, int, float]:
    """Runs per slot beyond one with two schedulers racing from scratch; (extra, slots, seconds)."""
    with open_store(url) as store:
        _deploy(store, count)
        now = utcnow()
        schedulers = []
        stores = [open_store(url) for _ in range(2)]
        for each in stores:
            scheduler = Scheduler(each, HOUR, store=each, clock=lambda: now)
            _wait_visible(each, scheduler, count)
            schedulers.append(scheduler)
        started = time.perf_counter()
        threads = [threading.Thread(target=s.tick) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        for each in stores:
            each.close()
        # Runs per (deployment, due time), once every slot is visible to readers.
        deadline = time.monotonic() + 120
        by_time: Counter[tuple[str, str]] = Counter()
        while time.monotonic() < deadline:
            by_time = Counter(
                (str(e.data["flow_run_id"]), str(e.data["scheduled_time"]))
                for e in store.iter_all(batch=5000, types=["flow-run.Scheduled"])
            )
            if len(by_time) >= count * 60:
                break
            time.sleep(0.2)
        deployment_of = {str(e.data["flow_run_id"]): str(e.data["deployment_id"])
                         for e in store.iter_all(batch=5000, types=["flow-run.created"])}
        per_slot = Counter((deployment_of.get(run, "?"), when) for run, when in by_time)
        return sum(n - 1 for n in per_slot.values()), len(per_slot), elapsed


def noop() -> None:
    """Warms the fork server."""


def start_delay(url: str, due: int, concurrency: int) -> list[float]:
    with tempfile.TemporaryDirectory() as home, open_store(url) as store:
        apply_deployment(store, spec_from({
            "flow_name": "quick", "name": "now", "entrypoint": "bench/scheduling_flows.py:quick",
            "working_dir": str(REPO),
        }))
        # Requested ahead of their time, as the scheduler does (an hour ahead).
        at = utcnow() + timedelta(seconds=PREFETCH)
        ids = [str(request_deployment_run(store, "quick/now", scheduled_time=at).data["flow_run_id"])
               for _ in range(due)]
        rm = ReadModel(store)
        # As the server's runner: runs due within the prefetch window start their process early
        # and wait in it, flow loaded, for their time (api/http/services.py).
        launcher = RunLauncher(
            lambda n: queries.due_flow_runs(rm, pools=("default",), now=utcnow() + timedelta(seconds=PREFETCH),
                                            limit=min(n, 500)),
            ChildSettings(home, url), concurrency=concurrency, interval=0.02)
        # Warm the fork server (ledgerflow imported once) before the runs are due, as a server
        # that has been up for a while has.
        from ledgerflow.runtime.runner import fork_server

        warm = fork_server().Process(target=noop)
        warm.start()
        warm.join()
        launcher.start()
        try:
            delays: dict[str, float] = {}
            deadline = time.monotonic() + 300
            while len(delays) < due and time.monotonic() < deadline:
                for event in store.read_all(limit=10_000, types=["flow-run.Running"]):
                    run_id = str(event.data["flow_run_id"])
                    if run_id in ids and run_id not in delays:
                        delays[run_id] = (event.recorded - at).total_seconds()
                time.sleep(0.1)
        finally:
            launcher.stop()
        return sorted(delays.values())


def _databases(names: list[str]) -> Iterator[tuple[str, AbstractContextManager[str]]]:
    for name in names:
        yield name, (temp_sqlite_url() if name == "sqlite" else temp_postgres_url())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args()
    names = args.db.split(",")
    print(f"{args.deployments} deployments, one-minute schedules, 1 hour horizon")
    for name, database in _databases(names):
        with database as url:
            seconds, requested = materialise(url, args.deployments)
        print(f"{name:>8}  materialise {requested:,} slots: {seconds:6.2f} s ({requested / seconds:,.0f} runs/s)")
    for name, database in _databases(names):
        with database as url:
            extra, slots, seconds = duplicates(url, args.deployments)
        print(f"{name:>8}  two schedulers at once: {slots:,} slots, {extra} duplicate runs ({seconds:.2f} s)")
    for name, database in _databases(names):
        with database as url:
            delays = start_delay(url, args.due, args.concurrency)
        print(f"{name:>8}  {len(delays)} runs due at once, runner concurrency {args.concurrency}: start delay "
              f"p50 {percentile(delays, 50):.3f} s  p99 {percentile(delays, 99):.3f} s  max {max(delays):.3f} s")


if __name__ == "__main__":
    main()
