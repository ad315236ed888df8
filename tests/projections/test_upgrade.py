"""The live fold as a durable consumer: databases from before consumers, several sets of
projections on one database, and rebuilds that leave the consumer behind."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import inspect, select, update

from ledgerflow.events import Cursor, EventStore, open_store
from ledgerflow.events import checkpoints as consumer_checkpoints
from ledgerflow.events.migrations import current_version
from ledgerflow.events.tables import schema_versions
from ledgerflow.events.transactions import engine_of, write_transaction
from ledgerflow.projections.analytics import AnalyticsProjection
from ledgerflow.projections.live import consumer_name
from ledgerflow.projections.rebuild import rebuild
from ledgerflow.projections.runner import DEFAULT_PROJECTIONS, ProjectionRunner
from testdata.synthetic import random_run
from tests.projections.support import T0, snapshot, wait_visible

NAMES = ("runs", "lineage", "analytics", "deployments", "work_pools")


def seed(store: EventStore, count: int, seed: int) -> int:
    rng = random.Random(seed)
    runs = [random_run(rng, T0 + timedelta(minutes=7 * n)) for n in range(count)]
    wait_visible(store, store.append_streams([run.append() for run in runs]))
    return sum(len(run.events) for run in runs)


def as_before_consumers(store: EventStore) -> None:
    """Turn the database into what the release before durable consumers left behind: the
    same projection tables and checkpoints, no consumer checkpoints, event log schema 2."""
    engine = engine_of(store)
    with write_transaction(engine) as conn:
        conn.execute(update(schema_versions).where(schema_versions.c.component == "events").values(version=2))
        conn.exec_driver_sql("DROP TABLE consumer_checkpoints")


def test_a_database_from_before_consumers_goes_on_from_its_projection_checkpoints(store_url: str) -> None:
    store = open_store(store_url)
    try:
        seed(store, 8, seed=1)
        runner = ProjectionRunner(store, batch_size=10)
        runner.catch_up(limit=30)  # the three are a few batches in...
        runner.rebuild("lineage")  # ...and lineage is rebuilt to the head
        behind = runner.checkpoints()["runs"].cursor
        as_before_consumers(store)
    finally:
        store.close()

    store = open_store(store_url)  # the new release opens it
    try:
        engine = engine_of(store)
        assert "consumer_checkpoints" in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert current_version(conn, "events") == 3
        added = seed(store, 3, seed=2)
        runner = ProjectionRunner(store, batch_size=10)
        assert runner.checkpoints()["runs"].cursor == behind
        unread = len(store.read_all(after=behind, limit=10_000))
        # It reads on from the projections' own checkpoints (the least of them), not from the
        # start of the log, and the rebuilt one skips what it already has.
        assert runner.catch_up() == unread >= added
        head = Cursor.parse(store.head())
        assert {c.cursor for c in runner.checkpoints().values()} == {head}
        assert runner.consumer.checkpoint() == head
        for name in NAMES:
            incremental = snapshot(runner, name)
            runner.rebuild(name)
            assert snapshot(runner, name) == incremental, name
    finally:
        store.close()


def test_runners_of_different_sets_share_a_projection_without_applying_anything_twice(store: EventStore) -> None:
    seed(store, 6, seed=3)
    alone = ProjectionRunner(store, [AnalyticsProjection()], batch_size=7)
    alone.catch_up(limit=20)
    everything = ProjectionRunner(store, DEFAULT_PROJECTIONS, batch_size=9)
    assert alone.consumer.name != everything.consumer.name
    everything.catch_up()  # analytics is ahead of the other two: it skips what it has
    seed(store, 2, seed=4)
    alone.catch_up()
    everything.catch_up()
    head = Cursor.parse(store.head())
    assert {c.cursor for c in everything.checkpoints().values()} == {head}
    incremental = snapshot(everything, "analytics")
    everything.rebuild("analytics")
    assert snapshot(everything, "analytics") == incremental


def test_a_rebuild_of_every_projection_moves_the_consumer_along(store: EventStore) -> None:
    seed(store, 5, seed=5)
    runner = ProjectionRunner(store)
    runner.ensure()
    assert runner.consumer.checkpoint() == Cursor(0, 0)
    runner.rebuild()
    head = Cursor.parse(store.head())
    assert runner.consumer.checkpoint() == head  # nothing left to read again
    assert runner.catch_up() == 0

    # Rebuilt without moving the consumer (as by a runner over another set of projections):
    # a process starting then begins where the projections stand instead of reading it all
    # again; one already running reads the rebuilt span again and folds nothing of it.
    seed(store, 2, seed=6)
    rebuild(store, engine_of(store), DEFAULT_PROJECTIONS, 1000)
    head = Cursor.parse(store.head())
    assert runner.consumer.checkpoint() < head
    assert ProjectionRunner(store).catch_up() == 0
    assert runner.consumer.checkpoint() == head
    incremental = {name: snapshot(runner, name) for name in NAMES}
    runner.catch_up()
    assert {name: snapshot(runner, name) for name in NAMES} == incremental
    assert runner.consumer.checkpoint() == head


def test_the_consumer_checkpoint_is_named_after_the_set_of_projections(store: EventStore) -> None:
    runner = ProjectionRunner(store)
    runner.ensure()
    assert runner.consumer.name == consumer_name(NAMES) == "projections:analytics,deployments,lineage,runs,work_pools"
    with engine_of(store).connect() as conn:
        assert consumer_checkpoints.read_all(conn) == {runner.consumer.name: Cursor(0, 0)}


def test_the_runner_runs_as_a_service(store: EventStore) -> None:
    for interval in (None, 0.01):
        runner = ProjectionRunner(store)
        service = runner.service(interval=interval)
        service.start()
        try:
            seed(store, 1, seed=7)
            wait_until(lambda: runner.consumer.checkpoint() == Cursor.parse(store.head()))
        finally:
            service.stop()
        with engine_of(store).connect() as conn:
            flow_runs = runner.tables("runs")["flow_runs"]
            assert conn.execute(select(flow_runs.c.key)).all()


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
