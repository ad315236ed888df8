"""Benchmark of the projections: rebuild speed, live lag and query latency.

    python -m bench.projections [--runs 100000] [--backend sqlite|postgres|both] [--fresh]

On each database it prints:
- rebuild speed (events folded per second) of each projection and of all three, over a
  synthetic log in the runtime's event shapes: `--runs` flow runs of two task runs each,
  with logs, spread over 60 days (100,000 runs make ~1.2 million events);
- live lag: the projection runner runs as `ledgerflow projections run` in its own process
  while this one appends 1,000 task runs/s (10 every 10 ms, three events each); lag is the
  time from an append's return to its task run being visible, Completed, in the runs
  projection (polled every 2 ms), p50 / p99;
- query latency, as the CLI runs them (catching up first): `flow-run ls` (50 newest of all
  runs) and a 30-day analytics query, p50 / p95 over 50 calls.

The generated log is kept between runs (`~/.cache/ledgerflow-bench/` for SQLite, schema
`bench_projections_<runs>` on PostgreSQL); `--fresh` makes it again.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bench._common import (
    percentile,
    postgres_server_url,
    temp_postgres_url,
    temp_sqlite_url,
)
from ledgerflow.events import Cursor, NewEvent, StreamAppend, open_store
from ledgerflow.events.payloads import FlowRunCreated, TaskRunCreated, flow_run_stream
from ledgerflow.events.store import EventStore
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import ProjectionRunner
from testdata.synthetic import compact_run, state_event

TARGETS = {"rebuild": 20_000, "lag_p99_ms": 200, "query_ms": 50}
APPEND_BATCH = 20_000
CACHE = Path.home() / ".cache" / "ledgerflow-bench"


def generate(store: EventStore, runs: int) -> int:
    rng = random.Random(42)
    now = datetime.now(UTC)
    start = now - timedelta(days=60)
    step = timedelta(days=60) / runs
    pending: list[StreamAppend] = []
    size = total = 0
    began = time.perf_counter()
    for n in range(runs):
        part = compact_run(rng, start + n * step)
        pending.append(part)
        size += len(part.events)
        if size >= APPEND_BATCH or n == runs - 1:
            store.append_streams(pending)
            total += size
            pending, size = [], 0
            print(f"\r  generating: {total:,} events ({total / (time.perf_counter() - began):,.0f}/s)",
                  end="", flush=True)
    print()
    return total


def cached_log(backend: str, runs: int, fresh: bool) -> str:
    """The URL of a database holding the synthetic log of `runs` runs (made if missing)."""
    if backend == "sqlite":
        CACHE.mkdir(parents=True, exist_ok=True)
        path = CACHE / f"projections-{runs}.db"
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        schema = f"bench_projections_{runs}"
        server = postgres_server_url()
        with psycopg.connect(server, autocommit=True) as conn:
            if fresh:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    store = open_store(url)
    try:
        if Cursor.parse(store.head()).position == 0:
            generate(store, runs)
        else:
            print("  (reusing the generated log; --fresh makes it again)")
    finally:
        store.close()
    # A bulk-loaded table has no planner statistics until autovacuum gets to it; without them
    # PostgreSQL reads a type-filtered feed with a bitmap scan and sort of the whole rest of
    # the log (1.4 s per batch here) instead of walking the (tx_id, position) index.
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE events"))
    engine.dispose()
    return url


def bench_rebuild(url: str) -> None:
    store = open_store(url)
    try:
        runner = ProjectionRunner(store)
        runner.ensure()
        for label, names in (("runs", ["runs"]), ("all three", None)):
            began = time.perf_counter()
            read = runner.rebuild(names)
            seconds = time.perf_counter() - began
            rate = read / seconds
            verdict = "ok" if rate >= TARGETS["rebuild"] else "BELOW TARGET"
            print(f"  rebuild {label:<10} {read:>10,} events in {seconds:6.1f} s  {rate:>9,.0f} events/s"
                  f"   (target >= {TARGETS['rebuild']:,}: {verdict})", flush=True)
        bench_queries(store)
    finally:
        store.close()


def _timed(call: object, rounds: int = 50) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - began) * 1000)
    return percentile(times, 50), percentile(times, 95)


def bench_queries(store: EventStore) -> None:
    rm = ReadModel(store)
    with rm.reading("runs") as (conn, tables):
        count = conn.execute(select(func.count()).select_from(tables["flow_runs"])).scalar_one()
    page = queries.list_flow_runs(rm, limit=50)
    assert len(page.items) == 50
    p50, p95 = _timed(lambda: queries.list_flow_runs(rm, limit=50))
    print(f"  flow-run ls (50 newest of {count:,})   p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"
          f"   (target < {TARGETS['query_ms']} ms: {'ok' if p95 < TARGETS['query_ms'] else 'ABOVE TARGET'})")
    since = datetime.now(UTC) - timedelta(days=30)
    report = queries.analytics(rm, since=since)
    assert report.groups
    p50, p95 = _timed(lambda: queries.analytics(rm, since=since))
    print(f"  analytics, 30 days per flow      p50 {p50:6.1f} ms  p95 {p95:6.1f} ms"
          f"   (target < {TARGETS['query_ms']} ms: {'ok' if p95 < TARGETS['query_ms'] else 'ABOVE TARGET'})")


def bench_lag(url: str, seconds: float) -> None:
    """Append 1,000 task runs/s while `ledgerflow projections run` follows in another process."""
    store = open_store(url)
    runner = ProjectionRunner(store)
    runner.ensure()
    env = {**os.environ, "LEDGERFLOW_DATABASE_URL": url}
    follower = subprocess.Popen([sys.executable, "-m", "ledgerflow.api", "projections", "run"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        follower.stdout.readline()  # "following the log"
        task_runs = runner.tables("runs")["task_runs"]
        waiting: dict[str, float] = {}
        lags: list[float] = []
        lock = threading.Lock()
        done = threading.Event()

        def watch() -> None:
            with runner.engine.connect() as conn:
                while not done.is_set() or waiting:
                    with lock:
                        keys = list(waiting)
                    if keys:
                        seen = conn.execute(
                            select(task_runs.c.key).where(task_runs.c.key.in_(keys), task_runs.c.state_name == "Completed")
                        ).scalars().all()
                        conn.rollback()
                        now = time.perf_counter()
                        with lock:
                            for key in seen:
                                lags.append((now - waiting.pop(key)) * 1000)
                    time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        flow_id = str(uuid.uuid4())
        stream = flow_run_stream(flow_id)
        store.append(stream, [NewEvent(type="flow-run.created", data=FlowRunCreated(
            flow_run_id=flow_id, flow_name="lag", run_name="lag").as_data())])
        began = time.perf_counter()
        ticks = int(seconds * 100)
        for tick in range(ticks):
            events = []
            ids = []
            for _ in range(10):
                task_id = str(uuid.uuid4())
                ids.append(task_id)
                now = datetime.now(UTC)
                events.append(NewEvent(type="task-run.created", occurred=now, data=TaskRunCreated(
                    task_run_id=task_id, flow_run_id=flow_id, task_key="t", task_name="t", run_name="t",
                    occurrence=tick).as_data()))
                events.append(state_event(flow_id, "Running", now, task_id))
                events.append(state_event(flow_id, "Completed", now, task_id))
            store.append(stream, events)
            appended = time.perf_counter()
            with lock:
                waiting[ids[-1]] = appended
            pause = began + (tick + 1) / 100 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        rate = ticks * 10 / (time.perf_counter() - began)
        deadline = time.perf_counter() + 30
        while waiting and time.perf_counter() < deadline:
            time.sleep(0.01)
        done.set()
        watcher.join()
        p50, p99 = percentile(lags, 50), percentile(lags, 99)
        print(f"  live lag at {rate:,.0f} task runs/s   p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({len(lags)} samples, "
              f"{len(waiting)} never seen)   (target p99 < {TARGETS['lag_p99_ms']} ms: "
              f"{'ok' if p99 < TARGETS['lag_p99_ms'] and not waiting else 'ABOVE TARGET'})")
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(timeout=30)
        except subprocess.TimeoutExpired:
            follower.kill()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"\n{backend}", flush=True)
        url = cached_log(backend, args.runs, args.fresh)
        bench_rebuild(url)
        with (temp_sqlite_url() if backend == "sqlite" else temp_postgres_url()) as lag_url:
            bench_lag(lag_url, args.lag_seconds)


if __name__ == "__main__":
    main()
