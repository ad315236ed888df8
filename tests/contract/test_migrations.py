"""Schema migrations: a database at an older version is upgraded in place and keeps its events."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import Engine, make_url

from ledgerflow.events import NewEvent, StreamAppend, open_store
from ledgerflow.events.migrations import EVENT_LOG_MIGRATIONS, apply_migrations, current_version
from ledgerflow.events.tables import schema_versions
from tests.contract.support import all_visible, insert_behind_the_store


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    url = make_url(store_url)
    if url.drivername.startswith("postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    made = create_engine(url)
    yield made
    made.dispose()


def _write_as_version_1(engine: Engine, stream: str, count: int) -> list[NewEvent]:
    written = [NewEvent(type=f"old.{n % 2}", data={"n": n, "stream": stream}) for n in range(count)]
    with engine.begin() as conn:
        insert_behind_the_store(conn, stream, written)
    return written


def test_a_version_1_database_is_upgraded_and_keeps_every_event(engine: Engine, store_url: str) -> None:
    assert apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS, target=1) == 1
    assert "events_type_order_idx" not in {i["name"] for i in inspect(engine).get_indexes("events")}
    old = _write_as_version_1(engine, "legacy-a", 5) + _write_as_version_1(engine, "legacy-b", 3)

    store = open_store(store_url)
    try:
        with engine.connect() as conn:
            assert current_version(conn, "events") == max(m.version for m in EVENT_LOG_MIGRATIONS)
        assert "events_type_order_idx" in {i["name"] for i in inspect(engine).get_indexes("events")}
        assert "consumer_checkpoints" in inspect(engine).get_table_names()
        everything = all_visible(store, len(old))
        assert [e.id for e in everything] == [e.id for e in old]
        assert [e.data for e in everything] == [e.data for e in old]
        assert [e.type for e in store.read_all(types=["old.1"])] == ["old.1"] * 3
        assert store.verify().intact
        assert store.verify().events_checked == 8
        (new,) = store.append("legacy-a", [NewEvent(type="new")], 5)  # the old head still counts
        assert new.stream_position == 6
        store.append_streams([StreamAppend("legacy-b", [NewEvent(type="new")], 3)])
        assert store.verify().intact
    finally:
        store.close()


def test_opening_an_up_to_date_database_again_changes_nothing(engine: Engine, store_url: str) -> None:
    first = open_store(store_url)
    written = first.append("s", [NewEvent(type="t", data={"n": n}) for n in range(3)])
    first.close()
    with engine.connect() as conn:
        versions_before = conn.execute(select(schema_versions)).all()
    for _ in range(2):
        again = open_store(store_url)
        try:
            assert again.read_stream("s") == written
        finally:
            again.close()
    with engine.connect() as conn:
        assert conn.execute(select(schema_versions)).all() == versions_before
    assert apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS) == versions_before[0].version


def test_migrations_stop_at_a_target_and_resume(engine: Engine) -> None:
    assert apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS, target=1) == 1
    assert apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS, target=1) == 1
    with engine.connect() as conn:
        assert current_version(conn, "events") == 1
        assert current_version(conn, "someone-else") == 0
    assert apply_migrations(engine, "events", EVENT_LOG_MIGRATIONS) == max(m.version for m in EVENT_LOG_MIGRATIONS)
    assert "events_type_order_idx" in {i["name"] for i in inspect(engine).get_indexes("events")}
    assert "consumer_checkpoints" in inspect(engine).get_table_names()


def _open_and_append(url: str, n: int, start: Any, results: Any) -> None:
    import ledgerflow.events  # noqa: F401  (imported before the barrier, so that the processes open together)

    start.wait(timeout=60)
    try:
        store = open_store(url)
        try:
            results.put(len(store.append(f"opener-{n}", [NewEvent(type="opened")])))
        finally:
            store.close()
    except Exception as exc:
        results.put(repr(exc))


def test_processes_opening_a_fresh_database_at_once_all_succeed(store_url: str) -> None:
    # Each process creates the schema if it finds none; the losers of that race must wait, not
    # fail with "database is locked" or a duplicate table.
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    openers = [context.Process(target=_open_and_append, args=(store_url, n, start, results)) for n in range(4)]
    for process in openers:
        process.start()
    outcomes = [results.get(timeout=120) for _ in openers]
    for process in openers:
        process.join(timeout=60)
    assert outcomes == [1] * 4
    store = open_store(store_url)
    try:
        assert sorted(e.stream for e in store.read_all()) == [f"opener-{n}" for n in range(4)]
    finally:
        store.close()
