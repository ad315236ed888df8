"""Benchmark of the automation engine: time from a `flow-run.Failed` append to the webhook
receiving the POST, at 100 failures/s with 10 rules (target p99 < 250 ms).

    python -m bench.automations [--db sqlite|postgres|both] [--seconds 20] [--rate 100] [--quick]

Two shapes of load, each with 10 rules that have a signed webhook action:
- `selective`: each rule watches its own flow; each failure fires one rule (100 POST/s);
- `fan-out`: every rule watches every failure (1,000 POST/s).

The receiver is a small ASGI app under uvicorn on a loopback port; each failure carries the
wall-clock time it was appended, and the webhook body echoes it back.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from bench._common import percentile, temp_postgres_url, temp_sqlite_url
from ledgerflow.events import EventStore, NewEvent, open_store
from ledgerflow.events.gcpause import freeze_startup_heap
from ledgerflow.events.model import new_id
from ledgerflow.notifications.blocks import BlockStore, parse_block
from ledgerflow.notifications.definitions import Automations
from ledgerflow.notifications.model import parse_rule
from ledgerflow.notifications.secretbox import SecretBox, load_keys
from ledgerflow.notifications.service import automation_service

RULES = 10
TARGET_P99_MS = 250.0

RULE = """
name: bench-{i}
trigger: {{match: {{events: ["flow-run.Failed"]{flow}}}}}
actions:
  - {{type: webhook, block: hook-{i}, body: '{{{{ {{"sent": event.data.sent, "rule": {i}}} | tojson }}}}'}}
"""


class Receiver:
    """Records the latency (ms) of each POST; `GET /stats` returns them."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        arrived = time.time()
        if scope["method"] == "GET":
            answer = orjson.dumps({"latencies": self.latencies})
        else:
            self.latencies.append((arrived - orjson.loads(body)["sent"]) * 1000)
            answer = b"ok"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})


def _receive(port: int) -> None:
    uvicorn.run(Receiver(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def receiving() -> Iterator[str]:
    """The webhook receiver in a process of its own (a remote endpoint does not share our CPU time)."""
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(target=_receive, args=(port,), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/stats", timeout=1.0)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield url
    finally:
        process.terminate()
        process.join(10)


def _latencies(stats: httpx.Client) -> list[float]:
    found: list[float] = orjson.loads(stats.get("/stats").content)["latencies"]
    return found


def _set_up(store: EventStore, home: Path, url: str, fan_out: bool) -> None:
    blocks = BlockStore.of(store, SecretBox(load_keys(None, home)))
    automations = Automations(store)
    for i in range(RULES):
        blocks.create(f"hook-{i}", parse_block("webhook", {"url": f"{url}/hook/{i}", "secret": "bench-secret"}))
        flow = "" if fan_out else f", flow_name: bench-flow-{i}"
        automations.create(parse_rule(RULE.format(i=i, flow=flow)))


def _fail_runs(store: EventStore, rate: float, seconds: float) -> int:
    """Append a failed run every 1/rate seconds for `seconds`; return how many."""
    period = 1.0 / rate
    start = time.monotonic()
    n = 0
    while (due := start + n * period) < start + seconds:
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        run_id = str(new_id())
        flow = f"bench-flow-{n % RULES}"
        created = {"flow_run_id": run_id, "flow_name": flow, "run_name": f"{flow}-{n}"}
        failed = {"flow_run_id": run_id, "state_type": "FAILED", "state_name": "Failed", "sent": time.time(),
                  "error": {"type": "RuntimeError", "message": "bench"}}
        store.append(f"flow-run-{run_id}", [NewEvent(type="flow-run.created", data=created),
                                            NewEvent(type="flow-run.Failed", data=failed)])
        n += 1
    return n


def run_case(store_url: str, *, fan_out: bool, rate: float, seconds: float) -> dict[str, float]:
    # One client polls the receiver: a new one per poll builds an SSL context each time, which
    # holds the GIL for tens of milliseconds and slowed the engine under test while it drained.
    with tempfile.TemporaryDirectory() as folder, receiving() as url, httpx.Client(base_url=url, timeout=30.0) as stats:
        home = Path(folder)
        store = open_store(store_url)
        try:
            _set_up(store, home, url, fan_out)
            service = automation_service(store, SecretBox(load_keys(None, home)))
            service.start()
            freeze_startup_heap()  # as the server and `ledgerflow automations run` do
            try:
                failures = _fail_runs(store, rate, seconds)
                expected = failures * (RULES if fan_out else 1)
                deadline = time.monotonic() + 120
                while len(_latencies(stats)) < expected and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                service.stop()
        finally:
            store.close()
        latencies = sorted(_latencies(stats))
    return {
        "failures": failures, "posts": len(latencies), "expected": expected,
        "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": latencies[-1] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=100.0, help="failures per second")
    parser.add_argument("--quick", action="store_true", help="5 seconds per case")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"automation engine: {args.rate:g} failures/s for {seconds:g} s, {RULES} rules with a webhook action each")
    print(f"{'database':<10} {'load':<10} {'failures':>9} {'POSTs':>11} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target p99 < {TARGET_P99_MS:g} ms")
    for db in databases:
        for fan_out in (False, True):
            with (temp_sqlite_url() if db == "sqlite" else temp_postgres_url()) as url:
                result = run_case(url, fan_out=fan_out, rate=args.rate, seconds=seconds)
            load = "fan-out" if fan_out else "selective"
            verdict = "ok" if result["p99"] < TARGET_P99_MS and result["posts"] == result["expected"] else "MISSED"
            print(f"{db:<10} {load:<10} {result['failures']:>9.0f} {result['posts']:>5.0f}/{result['expected']:<5.0f} "
                  f"{result['p50']:>8.1f} {result['p99']:>8.1f} {result['max']:>8.1f}  {verdict}")


if __name__ == "__main__":
    main()
