"""Benchmark of the API server (a real `ledgerflow server start` process), on SQLite and PostgreSQL.

    python -m bench.api [--db sqlite|postgres|both] [--quick]

B1 event ingest over HTTP, batches of 100 (targets >= 20,000 events/s); B2 SSE delivery latency
(event's `occurred` to a client's receipt) to 10 clients while 1,000 events/s are appended
(target p99 < 100 ms); B3 `GET /api/flow-runs` latency over 2,000 runs; B4 server RSS with 100
feed clients connected, 10 of which never read, while 60,000 1-KB events are appended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import psutil  # type: ignore[import-untyped]

from bench._common import percentile, temp_postgres_url, temp_sqlite_url

BATCH = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(store_url: str, workers: int = 1, **settings: str) -> Iterator[tuple[str, psutil.Process]]:
    """`ledgerflow server start` on a free port; `settings`: more LEDGERFLOW_* variables."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
        env.update(LEDGERFLOW_HOME=home, LEDGERFLOW_DATABASE_URL=store_url, **settings)
        # The server's output, and its run processes' (their runs' log lines), go to a file:
        # the figures stay readable, and a server that does not start says why.
        log = Path(home) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "ledgerflow.api", "server", "start", "--port", str(port), "--log-level", "warning",
                 "--workers", str(workers)],
                env=env, stdout=output, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the server did not start:\n" + log.read_text(errors="replace")[-2000:])
                time.sleep(0.1)
            yield url, psutil.Process(process.pid)
        finally:
            process.terminate()
            process.wait(30)


def batch_body(stream: str, count: int, data: dict[str, object] | None = None) -> bytes:
    now = datetime.now(UTC)
    events = [{"type": "bench.tick", "data": data or {"n": n}, "occurred": now} for n in range(count)]
    return orjson.dumps({"appends": [{"stream": stream, "events": events}]})


async def ingest(url: str, total: int, concurrency: int = 4) -> float:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        per_worker = total // BATCH // concurrency

        async def worker(n: int) -> None:
            stream = f"ingest-{n}-{uuid.uuid4().hex[:8]}"
            for _ in range(per_worker):
                reply = await client.post("/api/events", content=batch_body(stream, BATCH), headers=headers)
                reply.raise_for_status()

        await worker(99)  # warm up: connections, the stream-head cache, the first pages
        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return per_worker * concurrency * BATCH / (time.perf_counter() - start)


async def sse_client(url: str, latencies: list[float], ready: asyncio.Event, stop: asyncio.Event) -> None:
    """A lean SSE reader: each chunk is timed on arrival, before it is parsed, so the client's
    own parsing does not count as delivery latency."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/events/feed?type=bench.live HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    ready.set()
    pending = b""
    while not stop.is_set():
        chunk = await reader.read(65536)
        arrived = time.time()
        if not chunk:
            break
        pending += chunk
        *messages, pending = pending.split(b"\n\n")
        for message in messages:
            start = message.find(b"data: ")
            if start >= 0:
                end = message.find(b"\n", start)
                occurred = orjson.loads(message[start + 6 : end if end >= 0 else None])["occurred"]
                latencies.append(arrived - datetime.fromisoformat(occurred).timestamp())
    writer.close()


async def feed_latency(url: str, seconds: float, rate_per_s: int = 1000, clients: int = 10) -> list[float]:
    latencies: list[float] = []
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [asyncio.create_task(sse_client(url, latencies, r, stop)) for r in readies]
    for ready in readies:
        await ready.wait()
    per_tick = 50
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        start = time.perf_counter()
        sent = 0
        while time.perf_counter() - start < seconds:
            events = [{"type": "bench.live", "data": {"n": n}, "occurred": datetime.now(UTC)} for n in range(per_tick)]
            body = orjson.dumps({"appends": [{"stream": "live-1", "events": events}]})
            (await client.post("/api/events", content=body, headers=headers)).raise_for_status()
            sent += per_tick
            delay = start + sent / rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        achieved = sent / (time.perf_counter() - start)
    deadline = time.monotonic() + 10
    while len(latencies) < sent * clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"    appended {sent:,} events at {achieved:,.0f}/s; {len(latencies):,} of {sent * clients:,} deliveries seen")
    return latencies


def seed_runs(url: str, runs: int) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, runs, 100):
            appends = []
            for n in range(start, min(start + 100, runs)):
                run = f"bench-{n}"
                now = datetime.now(UTC)
                appends.append({"stream": f"flow-run-{run}", "events": [
                    {"type": "flow-run.created", "occurred": now,
                     "data": {"flow_run_id": run, "flow_name": f"flow-{n % 7}", "run_name": run}},
                    {"type": "flow-run.Running", "occurred": now,
                     "data": {"flow_run_id": run, "state_type": "RUNNING", "state_name": "Running"}},
                    {"type": "flow-run.Completed" if n % 10 else "flow-run.Failed", "occurred": now,
                     "data": {"flow_run_id": run, "state_type": "COMPLETED" if n % 10 else "FAILED",
                              "state_name": "Completed" if n % 10 else "Failed"}},
                ]})
            client.post("/api/events", content=orjson.dumps({"appends": appends}),
                        headers={"content-type": "application/json"}).raise_for_status()
        deadline = time.monotonic() + 120
        while max(client.get("/health").json()["projection_lag"].values()) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)


def run_list_latency(url: str, requests: int) -> list[float]:
    timings = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(requests):
            params: dict[str, str | int] = (
                {"limit": 50} if n % 2 else {"limit": 50, "state": "FAILED", "flow_name": "flow-3"}
            )
            start = time.perf_counter()
            client.get("/api/flow-runs", params=params).raise_for_status()
            timings.append(time.perf_counter() - start)
    return timings


async def memory_under_load(url: str, process: psutil.Process, events: int) -> None:
    host, port = url.removeprefix("http://").split(":")

    def request(query: str) -> bytes:
        return f"GET /api/events/feed{query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()

    baseline = process.memory_info().rss
    stop = asyncio.Event()
    stalled: list[asyncio.StreamWriter] = []
    received = [0]

    async def reader(query: str) -> None:
        r, w = await asyncio.open_connection(host, int(port))
        w.write(request(query))
        while not stop.is_set():
            chunk = await r.read(65536)
            if not chunk:
                break
            received[0] += len(chunk)
        w.close()

    for _ in range(10):  # never read: their sockets fill up and the server's sends to them wait
        _, w = await asyncio.open_connection(host, int(port), limit=1024)
        w.write(request(""))
        stalled.append(w)
    readers = [asyncio.create_task(reader("")) for _ in range(10)]
    readers += [asyncio.create_task(reader("?type=bench.rare")) for _ in range(80)]
    await asyncio.sleep(1.0)
    connected = process.memory_info().rss
    peak = connected
    blob = "x" * 1000
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for start in range(0, events, 500):
            now = datetime.now(UTC)
            batch = [{"type": "bench.rare" if n % 100 == 0 else "bench.bulk", "data": {"blob": blob}, "occurred": now}
                     for n in range(500)]
            body = orjson.dumps({"appends": [{"stream": "memory-1", "events": batch}]})
            (await client.post("/api/events", content=body, headers={"content-type": "application/json"})).raise_for_status()
            peak = max(peak, process.memory_info().rss)
        for _ in range(20):
            await asyncio.sleep(0.25)
            peak = max(peak, process.memory_info().rss)
        clients = (await client.get("/health")).json()["feed_clients"]
    stop.set()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for w in stalled:
        w.close()
    mb = 1024 * 1024
    print(f"    RSS {baseline / mb:,.0f} MB idle, {connected / mb:,.0f} MB with 100 feed clients connected "
          f"({clients} still connected at the end), peak {peak / mb:,.0f} MB while {events:,} 1-KB events "
          f"were appended; the 90 readers received {received[0] / mb:,.0f} MB")
    print("    (10 never-reading clients + 10 reading everything + 80 filtering to 1 event in 100; the "
          "in-memory window is capped at 20,000 events / 32 MB of JSON, the rest is read from the log)")


def bench(name: str, store_url: str, quick: bool) -> None:
    print(f"\n== {name} ({os.cpu_count()} CPUs, shared by the server, the clients and the database) ==")
    with server(store_url) as (url, process):
        total = 20_000 if quick else 100_000
        rate = asyncio.run(ingest(url, total, 8))
        print(f"B1 ingest over HTTP, batches of {BATCH}, 8 concurrent clients, 1 server process: {rate:,.0f} "
              f"events/s (target >= 20,000: {'met' if rate >= 20_000 else 'MISSED'})")
        latencies = asyncio.run(feed_latency(url, 3 if quick else 10))
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        print(f"B2 SSE delivery to 10 clients at 1,000 events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(target p99 < 100 ms: {'met' if p99 < 100 else 'MISSED'})")
        seed_runs(url, 2000)
        timings = run_list_latency(url, 200)
        print(f"B3 GET /api/flow-runs (2,000 runs, pages of 50): p50 {percentile(timings, 50) * 1000:.1f} ms, "
              f"p99 {percentile(timings, 99) * 1000:.1f} ms")
        print("B4 server memory, 100 feed clients of which 10 never read:")
        asyncio.run(memory_under_load(url, process, 10_000 if quick else 60_000))
    if name == "PostgreSQL":
        with server(store_url, workers=2) as (url, _):
            rate = asyncio.run(ingest(url, total, 8))
            print(f"B1 ingest again with `server start --workers 2`: {rate:,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.db in ("sqlite", "both"):
        with temp_sqlite_url() as url:
            bench("SQLite", url, args.quick)
    if args.db in ("postgres", "both"):
        with temp_postgres_url() as url:
            bench("PostgreSQL", url, args.quick)


if __name__ == "__main__":
    main()
