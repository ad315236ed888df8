"""`ProjectionRunner`: keeps a set of projections up to date with the log, and rebuilds them.

The one object the server, the CLI and the tests drive. It sets the projections up (their
checkpoint rows and tables; a rebuild when a projection's code changed version), folds new
events as a durable consumer (projections/live.py: `catch_up`, `run`, `service`), and rebuilds
projections aside before swapping them in (projections/rebuild.py). Bulk row moves live in
projections/bulk.py, the fold of one batch in projections/folding.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Table, inspect, select, text

from ledgerflow.events import Cursor, EventStore
from ledgerflow.events.consumer import Batch, TransactionalConsumer
from ledgerflow.events.cursor import START
from ledgerflow.events.migrations import apply_migrations
from ledgerflow.events.service import LoopService
from ledgerflow.events.transactions import engine_of, write_transaction
from ledgerflow.projections.analytics import AnalyticsProjection
from ledgerflow.projections.base import Projection
from ledgerflow.projections.deployments import DeploymentsProjection
from ledgerflow.projections.catalog import (
    MIGRATIONS,
    Checkpoint,
    checkpoint_of,
    checkpoints,
    create_tables,
    tables_for,
)
from ledgerflow.projections.lineage import LineageProjection
from ledgerflow.projections.live import LiveFold, consumer_name, sync_checkpoint
from ledgerflow.projections.rebuild import rebuild
from ledgerflow.projections.run_views import RunsProjection
from ledgerflow.projections.workpools import WorkPoolsProjection

__all__ = ["DEFAULT_PROJECTIONS", "Checkpoint", "ProjectionRunner", "engine_of"]

DEFAULT_PROJECTIONS: tuple[Projection, ...] = (
    RunsProjection(),
    LineageProjection(),
    AnalyticsProjection(),
    DeploymentsProjection(),
    WorkPoolsProjection(),
)


class ProjectionRunner:
    """Keeps `projections` up to date with the log of `store`.

    `consumer` is the durable consumer that folds them (named after the set of projections,
    see `consumer_name`); `batch_size` is its batch size."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection] = DEFAULT_PROJECTIONS,
        *,
        batch_size: int = 2000,
        rebuild_batch_size: int = 5000,
    ) -> None:
        self.store = store
        self.engine = engine_of(store)
        self.projections = {p.name: p for p in projections}
        self.rebuild_batch_size = rebuild_batch_size
        self.consumer = TransactionalConsumer(
            store,
            consumer_name(self.projections),
            LiveFold(self.projections),
            types=sorted({t for p in projections for t in p.types}),
            batch_size=batch_size,
        )
        self._ready = False

    @property
    def batch_size(self) -> int:
        return self.consumer.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.consumer.batch_size = value

    # -- setup ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the checkpoint table and each projection's tables; rebuild those built by
        another version of their code."""
        if self._ready:
            return
        apply_migrations(self.engine, "projections", MIGRATIONS)
        stale = []
        with write_transaction(self.engine) as conn:
            _serialise(conn)
            lost = not inspect(conn).has_table(checkpoints.name)
            if lost:  # dropped by hand: every projection is rebuilt from the log
                checkpoints.create(conn)
            known = {row.name: checkpoint_of(row) for row in conn.execute(select(checkpoints))}
            for name, projection in self.projections.items():
                checkpoint = known.get(name)
                if checkpoint is None:
                    conn.execute(
                        checkpoints.insert().values(
                            name=name, generation=1, version=projection.version, cursor=str(START)
                        )
                    )
                    create_tables(conn, projection, 1)
                    if lost:
                        stale.append(name)
                elif checkpoint.version != projection.version:
                    stale.append(name)
        self._ready = True
        if stale:
            self.rebuild(stale)
        self._sync()

    def _sync(self) -> None:
        # On setting up and after a rebuild, not before every catch-up (a query's hot path):
        # after another process's rebuild, a running fold only reads the rebuilt span again,
        # folding nothing, and a new process starts past it.
        sync_checkpoint(self.engine, self.consumer.name, list(self.projections))

    def checkpoints(self) -> dict[str, Checkpoint]:
        """Each projection's generation, version and how far its tables reflect the log."""
        self.ensure()
        with self.engine.connect() as conn:
            return {
                row.name: checkpoint_of(row)
                for row in conn.execute(select(checkpoints))
                if row.name in self.projections
            }

    def tables(self, name: str) -> dict[str, Table]:
        """The live tables of projection `name`."""
        return tables_for(self.projections[name], self.checkpoints()[name].generation)

    # -- the live fold --------------------------------------------------------------------

    def catch_up(self, limit: int | None = None) -> int:
        """Apply everything the log has past the checkpoints (at most about `limit` events);
        return how many events were read."""
        self.ensure()
        return self.consumer.catch_up(limit)

    def run(self, stop: threading.Event, on_batch: Callable[[int], None] | None = None) -> None:
        """Follow the log (catching up first), applying events as they are appended, until
        `stop` is set; `on_batch(count)` after each batch of events applied."""
        self.ensure()

        def applied(batch: Batch) -> None:
            if on_batch is not None and batch.events:
                on_batch(len(batch.events))

        self.consumer.run(stop, applied)

    def service(self, *, interval: float | None = None) -> LoopService:
        """The live fold as a `Service`: following the log or, with `interval`, catching up
        every `interval` seconds (fewer, bigger transactions under a heavy write load)."""
        if interval is not None:

            def catch_up() -> None:
                self.catch_up()

            return LoopService("projections", catch_up, interval)

        def follow() -> None:
            self.run(loop.stopping)

        loop = LoopService("projections", follow, 0.0)
        return loop

    # -- rebuilding -----------------------------------------------------------------------

    def rebuild(
        self,
        names: str | Sequence[str] | None = None,
        progress: Callable[[int, Cursor], None] | None = None,
    ) -> int:
        """Build projections `names` (default: all) from the whole log into new tables while
        queries keep reading the live ones, then swap them in; return the number of events
        read. The log is read once for all of them. `progress(read, cursor)` after each batch."""
        self.ensure()
        chosen = [names] if isinstance(names, str) else list(names or self.projections)
        read = rebuild(
            self.store, self.engine, [self.projections[name] for name in chosen], self.rebuild_batch_size, progress
        )
        self._sync()
        return read


def _serialise(conn: Connection) -> None:
    # Two processes starting on a fresh PostgreSQL database must not both create tables.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ledgerflow-projections'))"))
