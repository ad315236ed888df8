"""The runner on real SQLite and PostgreSQL: atomic batches, no double-apply, rebuild aside."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import inspect, select

from ledgerflow.events import Cursor, EventStore, NewEvent, open_store
from ledgerflow.projections import queries
from ledgerflow.projections.analytics import AnalyticsProjection
from ledgerflow.projections.catalog import tables_for
from ledgerflow.projections.lineage import LineageProjection
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.run_views import RunsProjection
from ledgerflow.projections.runner import DEFAULT_PROJECTIONS, ProjectionRunner
from testdata.synthetic import SyntheticRun, random_run
from tests.projections.support import T0, Crash, Exploding, snapshot, wait_visible

NAMES = ("runs", "lineage", "analytics", "deployments", "work_pools")


def seed_runs(store: EventStore, count: int, seed: int = 7) -> list[SyntheticRun]:
    rng = random.Random(seed)
    runs = [random_run(rng, T0 + timedelta(minutes=13 * n)) for n in range(count)]
    wait_visible(store, store.append_streams([run.append() for run in runs]))
    return runs


def assert_equals_rebuild(runner: ProjectionRunner) -> None:
    for name in NAMES:
        incremental = snapshot(runner, name)
        runner.rebuild(name)
        assert snapshot(runner, name) == incremental, name


def test_catch_up_applies_everything_once_and_moves_every_checkpoint(store: EventStore) -> None:
    runs = seed_runs(store, 12)
    store.append("other-stream", [])  # no events: nothing to see
    runner = ProjectionRunner(store, batch_size=40)
    read = runner.catch_up()
    assert read == sum(len(run.events) for run in runs)
    assert runner.catch_up() == 0
    head = Cursor.parse(store.head())
    assert {c.cursor for c in runner.checkpoints().values()} == {head}
    with runner.engine.connect() as conn:
        flow_runs = runner.tables("runs")["flow_runs"]
        assert {row.key for row in conn.execute(select(flow_runs.c.key))} == {run.id for run in runs}


def test_checkpoints_move_past_events_no_projection_reads(store: EventStore) -> None:
    runs = seed_runs(store, 3)
    runner = ProjectionRunner(store)
    runner.catch_up()
    foreign = store.append("bench-1", [NewEvent(type="bench.tick") for _ in range(5)])
    wait_visible(store, foreign)
    assert runner.catch_up() == 0  # nothing to fold, but the checkpoints move to the head:
    assert {c.cursor for c in runner.checkpoints().values()} == {Cursor.parse(foreign[-1].cursor)}
    run = SyntheticRun("after", T0)
    run.state("Running")
    wait_visible(store, store.append(run.stream, run.events))
    assert runner.catch_up() == len(run.events)
    page = queries.list_flow_runs(ReadModel(store, catch_up=False), limit=10)
    assert {r.id for r in page.items} == {r.id for r in runs} | {run.id}


def test_a_checkpoint_ahead_of_the_others_never_moves_back(store: EventStore) -> None:
    runs = seed_runs(store, 6)
    runner = ProjectionRunner(store, batch_size=10)
    runner.catch_up(limit=10)  # every checkpoint a few events in
    behind = runner.checkpoints()["runs"].cursor
    runner.rebuild("lineage")  # lineage now reads from the head; runs and analytics are behind
    head = Cursor.parse(store.head())
    assert runner.checkpoints()["lineage"].cursor == head > behind
    runner.catch_up(limit=10)  # one batch, ending well before the head
    assert runner.checkpoints()["runs"].cursor < head
    assert runner.checkpoints()["lineage"].cursor == head
    runner.catch_up()
    assert {c.cursor for c in runner.checkpoints().values()} == {head}
    assert_equals_rebuild(runner)
    assert len(runs) == 6


def test_a_crash_mid_batch_writes_nothing_and_a_restart_gives_the_rebuilt_result(store: EventStore) -> None:
    seed_runs(store, 10)
    crashing = ProjectionRunner(
        store, [RunsProjection(), LineageProjection(), Exploding(AnalyticsProjection(), fail_on=2)], batch_size=25
    )
    with pytest.raises(Crash):
        crashing.catch_up()
    first_batch = store.read_all(limit=25, types=["flow-run.*", "task-run.*"])
    after_first = Cursor.parse(first_batch[-1].cursor)
    assert {c.cursor for c in crashing.checkpoints().values()} == {after_first}
    with crashing.engine.connect() as conn:
        flow_runs = crashing.tables("runs")["flow_runs"]
        stored = {row.key for row in conn.execute(select(flow_runs.c.key))}
    assert stored == {event.data["flow_run_id"] for event in first_batch}  # batch 2 rolled back whole

    restarted = ProjectionRunner(store, batch_size=25)
    restarted.catch_up()
    assert_equals_rebuild(restarted)


def test_two_processes_catching_up_at_once_never_apply_a_batch_twice(
    store_factory: Callable[[], EventStore],
) -> None:
    writer = store_factory()
    runs = seed_runs(writer, 20)
    runners = [ProjectionRunner(store_factory(), batch_size=7) for _ in range(2)]
    runners[0].ensure()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def catch_up(runner: ProjectionRunner) -> None:
        try:
            start.wait()
            runner.catch_up()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=catch_up, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    rm = ReadModel(writer, catch_up=False)
    report = queries.analytics(rm, since=T0 - timedelta(days=1), until=T0 + timedelta(days=2))
    assert sum(group.runs for group in report.groups) == len(runs)
    assert_equals_rebuild(runners[0])


def test_queries_read_the_old_tables_while_a_rebuild_builds_the_new_ones(store: EventStore) -> None:
    seed_runs(store, 8)
    rm = ReadModel(store)
    before = queries.list_flow_runs(rm, limit=100)
    old_generation = rm.runner.checkpoints()["runs"].generation
    during: list[int] = []

    def progress(folded: int, cursor: Cursor) -> None:
        page = queries.list_flow_runs(ReadModel(store, catch_up=False), limit=100)
        during.append(len(page.items))

    rm.runner.rebuild("runs", progress)
    assert during and all(count == len(before.items) for count in during)
    checkpoint = rm.runner.checkpoints()["runs"]
    assert checkpoint.generation == old_generation + 1 and checkpoint.building_generation is None
    assert queries.list_flow_runs(rm, limit=100) == before
    inspector = inspect(rm.runner.engine)
    existing = set(inspector.get_table_names())
    for table in rm.runner.tables("runs").values():  # built after the bulk load, but built
        assert {i["name"] for i in inspector.get_indexes(table.name)} == {i.name for i in table.indexes}
    old_tables = tables_for(rm.runner.projections["runs"], old_generation).values()
    assert not {table.name for table in old_tables} & existing


def test_a_new_projection_version_is_rebuilt_on_start(store: EventStore) -> None:
    runs = seed_runs(store, 5)
    ProjectionRunner(store).catch_up()

    class RunsNext(RunsProjection):
        version = RunsProjection.version + 1

    runner = ProjectionRunner(store, [RunsNext(), LineageProjection(), AnalyticsProjection()])
    runner.ensure()
    checkpoint = runner.checkpoints()["runs"]
    assert (checkpoint.version, checkpoint.generation) == (RunsProjection.version + 1, 2)
    with runner.engine.connect() as conn:
        flow_runs = runner.tables("runs")["flow_runs"]
        assert len(conn.execute(select(flow_runs.c.key)).all()) == len(runs)


def test_the_live_runner_shows_new_runs_without_being_asked(store: EventStore) -> None:
    runner = ProjectionRunner(store, DEFAULT_PROJECTIONS)
    stop = threading.Event()
    applied = threading.Condition()
    seen = [0]

    def on_batch(count: int) -> None:
        with applied:
            seen[0] += count
            applied.notify_all()

    thread = threading.Thread(target=runner.run, args=(stop, on_batch))
    thread.start()
    try:
        run = SyntheticRun("live", T0)
        run.state("Running")
        wait_visible(store, store.append(run.stream, run.events))
        with applied:
            assert applied.wait_for(lambda: seen[0] >= len(run.events), timeout=30)
        page = queries.list_flow_runs(ReadModel(store, catch_up=False))
        assert [(r.id, r.state_name) for r in page.items] == [(run.id, "Running")]
    finally:
        stop.set()
        thread.join()


def test_a_query_in_progress_keeps_its_tables_through_a_rebuild_swap(store: EventStore) -> None:
    runs = seed_runs(store, 6)
    rm = ReadModel(store)
    rm.refresh()
    finished = threading.Event()

    def rebuild() -> None:
        rm.runner.rebuild("runs")
        finished.set()

    with rm.reading("runs") as (conn, tables):
        query = select(tables["flow_runs"].c.key)
        before = set(conn.execute(query).scalars())
        thread = threading.Thread(target=rebuild)
        thread.start()
        # SQLite: the swap goes through and this reader's snapshot keeps the old tables.
        # PostgreSQL: the swap waits for this reader. Either way the query still answers.
        if rm.runner.engine.dialect.name == "sqlite":
            assert finished.wait(timeout=60)
        else:
            assert not finished.wait(timeout=0.5)
        assert set(conn.execute(query).scalars()) == before == {run.id for run in runs}
    thread.join()
    assert rm.runner.checkpoints()["runs"].generation == 2
    with rm.reading("runs") as (conn, tables):
        assert set(conn.execute(select(tables["flow_runs"].c.key)).scalars()) == before


def test_a_rebuild_too_big_for_memory_writes_out_and_reads_back_the_same_rows(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_runs(store, 15)
    runner = ProjectionRunner(store, batch_size=20)
    runner.catch_up()
    incremental = {name: snapshot(runner, name) for name in NAMES}
    monkeypatch.setattr("ledgerflow.projections.rebuild._CACHE_LIMIT", 10)
    runner.rebuild_batch_size = 7  # many batches, with rows written out and dropped between them
    runner.rebuild()
    assert {name: snapshot(runner, name) for name in NAMES} == incremental


def test_a_read_model_reads_its_own_process_writes_while_an_older_transaction_is_open(
    postgres_schema_url: str, postgres_server_url: str,
) -> None:
    # On PostgreSQL a reader sees a commit once no older transaction in the cluster is open: the
    # read model waits for what its own store appended, not for what others did.
    with open_store(postgres_schema_url) as store, psycopg.connect(postgres_server_url) as older:
        read_model = ReadModel(store)
        older.execute("SELECT pg_current_xact_id()")
        run = SyntheticRun("mine", T0)
        run.state("Running")
        store.append(run.stream, run.events)
        ends = threading.Timer(1.0, older.commit)
        ends.start()
        page = queries.list_flow_runs(read_model)
        ends.join()
        assert [(r.id, r.state_name) for r in page.items] == [(run.id, "Running")]
