"""Benchmark of the event store: our append next to raw driver inserts, and feed latency.

    python -m bench.store [--rounds N]

For each database it prints raw inserts into a table of the same shape without our code
(multi-row INSERTs of 100, and single-row commits), our `append` (batches of 100, single
events), and subscriber delivery latency while appending 1,000 events/s. Raw and ours run in
alternating rounds so that load from elsewhere on the machine hits both alike; the figures are
medians over the rounds.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy.engine import make_url

from bench._common import percentile, temp_postgres_url, temp_sqlite_url
from ledgerflow.events import NewEvent, open_store
from ledgerflow.events.store import EventStore
from ledgerflow.events.tables import to_micros

PAYLOAD = {"flow_run_id": str(uuid.uuid4()), "state_name": "Running", "attempt": 1, "message": "x" * 60}
COLUMNS = "id, stream, stream_position, type, occurred, data, meta, hash"


def _row(i: int) -> tuple[Any, ...]:
    return (uuid.uuid4(), f"raw-{i % 10}", i, "task-run.Running", datetime.now(UTC),
            orjson.dumps(PAYLOAD).decode(), "{}", b"\x00" * 32)


class RawPostgres:
    """Inserts through psycopg alone into a copy of the events table."""

    def __init__(self, url: str) -> None:
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.conn.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        self.n = 0
        marks = "(%s,%s,%s,%s,%s,%s,%s,%s)"
        self.batch_sql = f"INSERT INTO raw_events ({COLUMNS}) VALUES {','.join([marks] * 100)} RETURNING position, tx_id"
        self.single_sql = f"INSERT INTO raw_events ({COLUMNS}) VALUES {marks} RETURNING position, tx_id"

    def batch(self) -> None:
        params = [v for k in range(100) for v in _row(self.n + k)]
        self.n += 100
        # At its cheapest too: one autocommit statement, as our append sends it.
        self.conn.execute(self.batch_sql, params).fetchall()

    def single(self) -> None:
        # A single-row commit at its cheapest: autocommit, one round trip.
        self.conn.execute(self.single_sql, _row(self.n)).fetchall()
        self.n += 1

    def single_transaction(self) -> None:
        # The same as most code writes it: BEGIN, INSERT, COMMIT.
        with self.conn.transaction():
            self.conn.execute(self.single_sql, _row(self.n)).fetchall()
        self.n += 1

    def close(self) -> None:
        self.conn.close()


class RawSqlite:
    """Inserts through sqlite3 alone into a copy of the events table."""

    def __init__(self, url: str) -> None:
        path = make_url(url).database
        assert path is not None
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        ddl = self.conn.execute("SELECT sql FROM sqlite_master WHERE name='events'").fetchone()[0]
        self.conn.execute(ddl.replace("CREATE TABLE events", "CREATE TABLE raw_events", 1))
        self.conn.execute("CREATE UNIQUE INDEX raw_id ON raw_events (id)")
        self.conn.execute("CREATE INDEX raw_order ON raw_events (tx_id, position)")
        self.n = 0
        marks = "(?,?,?,?,?,?,?,?,?)"
        columns = COLUMNS + ", recorded"
        self.batch_sql = f"INSERT INTO raw_events ({columns}) VALUES {','.join([marks] * 100)}"
        self.single_sql = f"INSERT INTO raw_events ({columns}) VALUES {marks}"

    def _params(self, i: int) -> list[Any]:
        u, stream, pos, typ, occurred, data, meta, h = _row(i)
        return [u.hex, stream, pos, typ, to_micros(occurred), data, meta, h, to_micros(occurred)]

    def batch(self) -> None:
        params = [v for k in range(100) for v in self._params(self.n + k)]
        self.n += 100
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(self.batch_sql, params)
        self.conn.execute("COMMIT")

    def single(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(self.single_sql, self._params(self.n))
        self.n += 1
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class Ours:
    def __init__(self, url: str) -> None:
        self.store: EventStore = open_store(url)
        self.n = 0

    def batch(self) -> None:
        self.n += 1
        self.store.append(f"batch-{self.n % 10}", [NewEvent(type="task-run.Running", data=PAYLOAD) for _ in range(100)])

    def single(self) -> None:
        self.n += 1
        self.store.append(f"single-{self.n % 10}", [NewEvent(type="task-run.Running", data=PAYLOAD)])

    def close(self) -> None:
        self.store.close()


def _timed(action: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        action()
    return calls / (time.perf_counter() - start)


def interleaved(raw: Any, ours: Ours, rounds: int, batches: int, singles: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        samples.setdefault("raw batch", []).append(_timed(raw.batch, batches) * 100)
        samples.setdefault("our batch", []).append(_timed(ours.batch, batches) * 100)
        samples.setdefault("raw single", []).append(_timed(raw.single, singles))
        if hasattr(raw, "single_transaction"):
            samples.setdefault("raw single tx", []).append(_timed(raw.single_transaction, singles))
        samples.setdefault("our single", []).append(_timed(ours.single, singles))
    return {name: statistics.median(values) for name, values in samples.items()}


def delivery_latency(url: str, per_second: int, seconds: float) -> tuple[float, float, int]:
    """Append `per_second` events/s through one store while another store's subscriber follows."""
    writer, reader = open_store(url), open_store(url)
    sent: dict[uuid.UUID, float] = {}
    latencies: list[float] = []
    total = int(per_second * seconds)
    subscription = reader.subscribe(after=reader.head())
    done = threading.Event()

    def follow() -> None:
        while len(latencies) < total and not done.is_set():
            for event in subscription.poll(timeout=0.5):
                latencies.append(time.perf_counter() - sent[event.id])

    follower = threading.Thread(target=follow)
    follower.start()
    start = time.perf_counter()
    for i in range(total):
        if (pause := start + i / per_second - time.perf_counter()) > 0:
            time.sleep(pause)
        event = NewEvent(type="log.emitted", data=PAYLOAD)
        sent[event.id] = time.perf_counter()
        writer.append(f"live-{i % 10}", [event])
    follower.join(timeout=10)
    done.set()
    subscription.close()
    writer.close()
    reader.close()
    ms = [x * 1000 for x in latencies]
    return percentile(ms, 50), percentile(ms, 99), len(latencies)


def run(name: str, database: Callable[[], AbstractContextManager[str]], raw_kind: Callable[[str], Any],
        args: argparse.Namespace) -> None:
    print(f"\n{name}", flush=True)
    with database() as url:
        ours = Ours(url)  # creates the schema the raw table copies
        raw = raw_kind(url)
        try:
            figures = interleaved(raw, ours, args.rounds, args.batches, args.singles)
        finally:
            raw.close()
            ours.close()
        p50, p99, received = delivery_latency(url, 1000, args.seconds)
    for kind, label in (("batch", "batches of 100"), ("single", "single events ")):
        raw_rate, our_rate = figures[f"raw {kind}"], figures[f"our {kind}"]
        print(f"  raw insert, {label}  {raw_rate:>9,.0f} events/s")
        if (tx_rate := figures.get(f"raw {kind} tx")) is not None:
            print(f"  raw insert, single, BEGIN/COMMIT {tx_rate:>7,.0f} events/s")
        ratios = f"{our_rate / raw_rate:5.0%} of raw"
        if tx_rate is not None:
            ratios += f", {our_rate / tx_rate:.0%} of BEGIN/COMMIT raw"
        print(f"  append,     {label}  {our_rate:>9,.0f} events/s   {ratios}")
    print(f"  delivery at 1,000 events/s    p50 {p50:5.1f} ms   p99 {p99:5.1f} ms   ({received:,} received)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[1])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of raw and ours")
    parser.add_argument("--batches", type=int, default=60, help="batches of 100 per round")
    parser.add_argument("--singles", type=int, default=1500, help="single-event appends per round")
    parser.add_argument("--seconds", type=float, default=5, help="length of the latency run")
    args = parser.parse_args()
    run("SQLite (WAL, synchronous=NORMAL)", temp_sqlite_url, RawSqlite, args)
    run("PostgreSQL", temp_postgres_url, RawPostgres, args)


if __name__ == "__main__":
    main()
