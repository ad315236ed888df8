"""Benchmark of the scheduler and the built-in runner.

    python -m bench.scheduling [--deployments 1000] [--due 100] [--concurrency 100] [--db sqlite,postgres]
                               [--parts materialise,duplicates,start-delay]

For each database it prints:
- materialise: 1,000 deployments with one-minute schedules, the time one scheduler takes to
  request the next hour of slots (60,000 runs, 120,000 events) from an empty start;
- duplicates: two schedulers (two processes' worth of stores, in threads) doing the same from
  scratch at once on a fresh database: runs per slot beyond one (must be 0);
- start delay: 100 runs due at the same moment, requested ahead of it (as the scheduler does)
  and executed by the built-in runner of a real `ledgerflow server start` process (runner
  concurrency `--concurrency`, its 10 s prefetch window), after one warm-up run: from the due
  time to each run's `Running`, p50 / p99 / max; on PostgreSQL also the most database
  connections the server and its run processes held at once (pg_stat_activity).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench._common import percentile, postgres_server_url, temp_postgres_url, temp_sqlite_url
from bench.api import server
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import apply_deployment, request_deployment_run, spec_from
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import read_flow_run
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
    """The flow the deployments of `materialise` and `duplicates` name (never executed)."""


def _connections(admin: psycopg.Connection[tuple[int]], tag: str) -> int:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (tag,)).fetchone()
    return row[0] if row else 0


def start_delay(url: str, due: int, concurrency: int) -> tuple[list[float], int | None]:
    """Start delays (seconds, sorted), and on PostgreSQL the most connections the server and
    its run processes held at once."""
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    server_url = url
    if url.startswith("postgresql"):  # every connection of the server and its runs carries the tag
        server_url = make_url(url).update_query_dict({"application_name": tag}).render_as_string(hide_password=False)
    watching = psycopg.connect(postgres_server_url(), autocommit=True) if server_url != url else nullcontext()
    with watching as admin, open_store(url) as store, server(server_url, LEDGERFLOW_RUNNER_CONCURRENCY=str(concurrency)):
        apply_deployment(store, spec_from({
            "flow_name": "quick", "name": "now", "entrypoint": "bench/scheduling_flows.py:quick",
            "working_dir": str(REPO),
        }))
        # One run first, as a server that has been up for a while has run some: its fork server
        # has ledgerflow imported.
        warm = str(request_deployment_run(store, "quick/now").data["flow_run_id"])
        deadline = time.monotonic() + 120
        while (state := read_flow_run(store, warm).state) is None or state.name != "Completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the warm-up run did not complete: {state}")
            time.sleep(0.1)
        # Requested ahead of their time, as the scheduler does (an hour ahead); the server's
        # runner starts their processes within its prefetch window, to wait there, flow loaded.
        at = utcnow() + timedelta(seconds=PREFETCH)
        ids = {str(request_deployment_run(store, "quick/now", scheduled_time=at).data["flow_run_id"])
               for _ in range(due)}
        delays: dict[str, float] = {}
        peak = 0
        deadline = time.monotonic() + PREFETCH + 120
        while len(delays) < due and time.monotonic() < deadline:
            if admin is not None:
                peak = max(peak, _connections(admin, tag))
            for event in store.read_all(limit=10_000, types=["flow-run.Running"]):
                run_id = str(event.data["flow_run_id"])
                if run_id in ids and run_id not in delays:
                    delays[run_id] = (event.recorded - at).total_seconds()
            time.sleep(0.1)
    return sorted(delays.values()), (peak if admin is not None else None)


def _databases(names: list[str]) -> Iterator[tuple[str, AbstractContextManager[str]]]:
    for name in names:
        yield name, (temp_sqlite_url() if name == "sqlite" else temp_postgres_url())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--parts", default="materialise,duplicates,start-delay")
    args = parser.parse_args()
    names = args.db.split(",")
    parts = args.parts.split(",")
    print(f"{args.deployments} deployments, one-minute schedules, 1 hour horizon")
    for name, database in _databases(names if "materialise" in parts else []):
        with database as url:
            seconds, requested = materialise(url, args.deployments)
        print(f"{name:>8}  materialise {requested:,} slots: {seconds:6.2f} s ({requested / seconds:,.0f} runs/s)")
    for name, database in _databases(names if "duplicates" in parts else []):
        with database as url:
            extra, slots, seconds = duplicates(url, args.deployments)
        print(f"{name:>8}  two schedulers at once: {slots:,} slots, {extra} duplicate runs ({seconds:.2f} s)")
    for name, database in _databases(names if "start-delay" in parts else []):
        with database as url:
            delays, peak = start_delay(url, args.due, args.concurrency)
        figures = (f"p50 {percentile(delays, 50):.3f} s  p99 {percentile(delays, 99):.3f} s  max {max(delays):.3f} s"
                   if delays else "none started")
        held = f"; at most {peak} database connections" if peak is not None else ""
        print(f"{name:>8}  {args.due} runs due at once, server runner concurrency {args.concurrency}: "
              f"{len(delays)} started, start delay {figures}{held}")


if __name__ == "__main__":
    main()
