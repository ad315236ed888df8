"""Benchmark of the runtime: every transition in the log, on SQLite and on PostgreSQL.

    python -m bench.runtime [--quick]

W1 cold start of hello world (whole process, median of 5, peak memory); W2 1,000 and 10,000
sequential trivial tasks in one flow; W3 a map of 1,000 trivial tasks; W4 100 concurrent flow
runs of 10 tasks; events and rows written per task run; and where a task run's time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from bench._common import temp_postgres_url, temp_sqlite_url
from ledgerflow.events import StoredEvent, StreamAppend
from ledgerflow.runtime import ThreadPoolTaskRunner, flow, task
from ledgerflow.runtime import config as runtime_config
from ledgerflow.runtime.logging import get_logger
from ledgerflow.runtime.testing import harness
from ledgerflow.runtime.eventlog import EventSink

HELLO = textwrap.dedent(
    """
    from ledgerflow.runtime import flow, task

    @task
    def greet(name):
        return f"hello {name}"

    @flow
    def hello(name: str = "world"):
        return greet(name)

    hello()
    """
)
PEAK_MEMORY = 'print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])'
"""The child reports its own peak RSS (kB): wait4's figure would include the parent's pages the
child held between fork and exec, which grow with everything the benchmark ran before."""


@task
def trivial(i: int) -> int:
    return i


@flow
def sequential(n: int) -> None:
    for i in range(n):
        trivial(i)


@task
def padded(i: int) -> str:
    return f"{i:0>600}"  # past the inline limit: each result is a file


@flow
def sequential_files(n: int) -> None:
    for i in range(n):
        padded(i)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
def mapped(n: int) -> None:
    for future in trivial.map(range(n)):
        future.wait()


@flow
def small(n: int = 10) -> None:
    for i in range(n):
        trivial(i)


def cold_start(store_url: str, runs: int) -> tuple[float, float]:
    """Medians of wall time and peak RSS (MiB) of `python -c HELLO`, a fresh home each time."""
    times, peaks = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "LEDGERFLOW_HOME": home}
            env["LEDGERFLOW_DATABASE_URL"] = store_url if store_url.startswith("postgresql") else f"sqlite:///{home}/l.db"
            start = time.perf_counter()
            child = subprocess.run(
                [sys.executable, "-c", HELLO + PEAK_MEMORY], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, check=True,
            )
            times.append(time.perf_counter() - start)
            peaks.append(int(child.stdout.split()[-1]) / 1024)
    return statistics.median(times), statistics.median(peaks)


def rate(action: Callable[[], Any], count: int, repeat: int = 1) -> float:
    """Best of `repeat` runs, in items per second (the machine is shared; the best is the signal)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return count / best


def concurrent_flows(flows: int = 100, tasks: int = 10) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=flows) as pool:
        for result in [pool.submit(small, tasks) for _ in range(flows)]:
            result.result()
    return flows / (time.perf_counter() - start)


class MeteredSink:
    """Passes batches on to a sink, counting what it is asked to write and the time it takes."""

    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self.seconds = 0.0
        self.batches = self.events = self.stream_rows = 0

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        start = time.perf_counter()
        stored = self.sink.append_streams(appends) if self.sink is not None else []
        self.seconds += time.perf_counter() - start
        self.batches += 1
        self.stream_rows += len(appends)
        self.events += sum(len(append.events) for append in appends)
        return stored


class CapturingSink:
    """Keeps the batches a run writes, to replay them into a store on their own."""

    def __init__(self) -> None:
        self.batches: list[list[StreamAppend]] = []

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        self.batches.append(list(appends))
        return []


@contextmanager
def metered() -> Iterator[MeteredSink]:
    """Meter the current runtime's writer for the duration of the block."""
    writer = runtime_config.current().writer
    writer.flush()
    real = writer.sink
    meter = MeteredSink(real)
    writer.sink = meter
    try:
        yield meter
    finally:
        writer.flush()
        writer.sink = real


@contextmanager
def dropped() -> Iterator[None]:
    """Batches go nowhere: the engine's cost without the store's."""
    writer = runtime_config.current().writer
    writer.flush()
    real, writer.sink = writer.sink, MeteredSink(None)
    try:
        yield
    finally:
        writer.flush()
        writer.sink = real


def run(name: str, database: AbstractContextManager[str], quick: bool) -> None:
    print(f"\n{name}", flush=True)
    with database as url:
        w1, memory = cold_start(url, 3 if quick else 5)
        print(f"  W1 cold start, hello world          {w1:8.2f} s    peak {memory:4.0f} MiB  (target <= 0.6 s, <= 80 MiB)")
        with harness(url):
            sequential(500)  # warm up: imports, prepared statements
            w2_small = rate(lambda: sequential(1_000), 1_000, repeat=3)
            with metered() as meter:
                w2_large = rate(lambda: sequential(10_000), 10_000)
            unpersisted = sequential.with_options(persist_result=False)
            w2_unpersisted = rate(lambda: unpersisted(10_000), 10_000)
            w2_files = rate(lambda: sequential_files(10_000), 10_000)
            w3 = rate(lambda: mapped(1_000), 1_000, repeat=3)
            w4 = concurrent_flows()
        target = 5_000 if "SQLite" in name else 3_000
        print(f"  W2 1,000 sequential tasks           {w2_small:8,.0f} tasks/s      (target >= {target:,})")
        print(f"  W2 10,000 sequential tasks          {w2_large:8,.0f} tasks/s      (target >= {target:,})")
        print(f"  W2 10,000, persist_result=False    {w2_unpersisted:8,.0f} tasks/s")
        print(f"  W2 10,000, 600-byte results        {w2_files:8,.0f} tasks/s      (a result file per task run)")
        print(f"  W3 map of 1,000 tasks               {w3:8,.0f} tasks/s      (target >= 3,000)")
        print(f"  W4 100 concurrent flows x 10 tasks  {w4:8,.0f} flow runs/s  (target >= 100)")
        n = 10_000
        print(f"  per task run (W2, 10,000): {meter.events / n:.2f} events = {meter.events / n:.2f} event rows"
              f" + {meter.stream_rows / n:.3f} stream-head rows ({meter.batches} batches of"
              f" ~{meter.events / max(meter.batches, 1):,.0f} events); store append {meter.seconds / n * 1e6:.0f} us"
              " on the writer thread")


def breakdown(n: int) -> None:
    """Microseconds per sequential task run on SQLite: each part measured on its own."""
    start = time.perf_counter()
    for i in range(n):
        trivial.fn(i)
    plain = (time.perf_counter() - start) / n * 1e6
    with harness():
        sequential(500)
        no_results = sequential.with_options(persist_result=False)
        with dropped():
            engine = 1e6 / rate(lambda: no_results(n), n, repeat=3)
        runtime = runtime_config.current()
        capture = CapturingSink()
        real, runtime.writer.sink = runtime.writer.sink, capture
        no_results(n)
        runtime.writer.flush()
        runtime.writer.sink = real
        fresh_values = iter(f"{i:0>600}" for i in range(10**9, 10**9 + n))

        def persist_new_values() -> None:
            for value in fresh_values:
                runtime.results.persist(value)
            runtime.results.sync()

        new_files = 1e6 / rate(persist_new_values, n)
        small = 1e6 / rate(lambda: [runtime.results.persist(i) for i in range(n)], n, repeat=3)
        full = 1e6 / rate(lambda: sequential(n), n, repeat=3)
        with dropped():
            profile = cProfile.Profile()
            profile.enable()
            no_results(n)
            profile.disable()
    with temp_sqlite_url() as url, harness(url) as store:
        append = 1e6 / rate(lambda: [store.append_streams(batch) for batch in capture.batches], n)
    print(f"\nWhere a sequential task run's time goes (SQLite, {n:,} tasks; each part measured alone):")
    rows = [
        ("calling the function itself", plain),
        ("engine: bind, context, build 3 events", engine - plain),
        ("store: append its 3 events (batched)", append),
        ("result, small: serialise+hash, in the event", small),
        ("result, 600 bytes: + create its file", new_files),
        ("W2 wall time per task run", full),
    ]
    for label, micros in rows:
        print(f"  {label:<44} {micros:7.1f} us")
    print("  (the engine runs on the flow's thread, the append on the writer's, result files on four more:"
          " they overlap, but on 2 CPUs Python work shares one GIL)")
    print(f"\nEngine profile, {n:,} task runs, events dropped (top functions by own time, us per task run):")
    stats = pstats.Stats(profile)
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    for (filename, line, function), (_, calls, own, _cumulative, _) in entries[:12]:
        where = f"{os.path.relpath(filename) if filename.startswith('/') else filename}:{line}({function})"
        print(f"  {own / n * 1e6:6.1f} us  {calls / n:5.1f} calls  {where[-80:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer cold starts")
    args = parser.parse_args()
    for handler in get_logger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)  # the console only: every record still is an event
    print(f"runtime benchmark, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
          f" (the machine is shared: figures are the best of repeated runs)")
    run("SQLite (embedded default)", temp_sqlite_url(), args.quick)
    run("PostgreSQL", temp_postgres_url(), args.quick)
    breakdown(5_000)


if __name__ == "__main__":
    main()
