"""Runs handed to a worker that has not claimed them yet.

Workers of one pool poll together; without this they would all be handed the same soonest
runs, race to claim them and lose most claims (the versioned append keeps the run to one of
them, but the others waste a round trip each). A run handed out is held for its worker for
`hold_seconds`: meanwhile it is handed to nobody else and counts against the pool's and its
queue's concurrency limits. A worker that dies without claiming it only delays the run.

The offers live in the store's database (table `run_offers`, migration component "offers"),
and each hand-out is one write transaction that first takes the pool's lock (a PostgreSQL
advisory lock; on SQLite, the database's write lock), so every server process on one
database (`server start --workers N`, servers on several hosts) sees the same offers: no run
is handed to two workers at once, and a pool or queue is never handed more runs than its
concurrency limit leaves room for. Within one process hand-outs take turns before they take
a connection, so requests waiting for the lock never hold the connections the one holding it
needs; its writes come last, so on PostgreSQL the transaction only holds back the log's
feed (events/postgres.py) for the moment it writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from sqlalchemy import Column, Connection, Engine, Float, MetaData, String, Table, delete, insert, select, text

from ledgerflow.events.migrations import Migration, apply_migrations
from ledgerflow.events.transactions import write_transaction
from ledgerflow.projections.pool_queries import DueRun

__all__ = ["RunOffers"]

metadata = MetaData()
run_offers = Table(
    "run_offers",
    metadata,
    Column("pool", String(100), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    # When the offer lapses, in seconds since the epoch: server processes share no monotonic clock.
    Column("until", Float, nullable=False),
)


def _create(conn: Connection) -> None:
    run_offers.create(conn)


MIGRATIONS = (Migration(1, "runs handed to workers and not claimed yet", _create),)


class RunOffers:
    def __init__(self, engine: Engine, hold_seconds: float = 30.0) -> None:
        self.engine = engine
        self.hold_seconds = hold_seconds
        self._turn = threading.Lock()
        apply_migrations(engine, "offers", MIGRATIONS)

    def hand_out(self, pool: str, pick: Callable[[Collection[str]], list[DueRun]]) -> list[DueRun]:
        """The runs `pick(held)` chooses, given the runs of `pool` held for workers now; one
        pick per pool at a time across every server process, so that two workers are never
        handed the same run. `pick` only reads: it runs while this holds the pool's lock (on
        SQLite, the database's write lock)."""
        with self._turn, write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"ledgerflow-offers:{pool}"})
            now = time.time()
            mine = run_offers.c.pool == pool
            held = [row[0] for row in conn.execute(select(run_offers.c.run_id).where(mine, run_offers.c.until > now))]
            chosen = pick(held)
            conn.execute(delete(run_offers).where(mine, run_offers.c.until <= now))
            if chosen:
                conn.execute(insert(run_offers), [
                    {"pool": pool, "run_id": run.id, "until": now + self.hold_seconds} for run in chosen])
            return chosen
