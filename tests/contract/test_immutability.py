"""Stored events cannot be changed, and a change made behind the triggers' back is caught by
`verify` (the store's and the CLI's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ledgerflow.events import EventStore, NewEvent, StoredEvent, open_store

SEED = 6


def _engine(store: EventStore) -> Engine:
    return store.engine  # type: ignore[attr-defined,no-any-return]


def _seed(store: EventStore) -> list[StoredEvent]:
    return [store.append(f"run-{i % 2}", [NewEvent(type="t", data={"n": i})])[0] for i in range(SEED)]


def _tamper(store: EventStore, statement: str) -> None:
    """Run `statement` on events with the immutability triggers out of the way, as an owner could."""
    engine = _engine(store)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER events_immutable")
            conn.exec_driver_sql(statement)
            conn.exec_driver_sql("ALTER TABLE events ENABLE TRIGGER events_immutable")
        else:
            triggers = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
            ).all()
            assert {name for name, _ in triggers} == {"events_no_update", "events_no_delete"}
            for name, _ in triggers:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            conn.exec_driver_sql(statement)
            for _, ddl in triggers:
                conn.exec_driver_sql(ddl)


def _cli(store_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LEDGERFLOW_DATABASE_URL": store_url,
        "LEDGERFLOW_HOME": str(tmp_path),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}'",
        "DELETE FROM events",
        "UPDATE events SET type = 'x' WHERE position = 1",
        "DELETE FROM events WHERE position = 6",
    ],
)
def test_update_and_delete_are_refused(store: EventStore, statement: str) -> None:
    written = _seed(store)
    with pytest.raises(DBAPIError, match="immutable"), _engine(store).begin() as conn:
        conn.exec_driver_sql(statement)
    assert store.read_stream("run-0") + store.read_stream("run-1") == sorted(written, key=lambda e: e.stream)
    assert store.verify().intact


def test_truncate_is_refused_on_postgres(postgres_schema_url: str) -> None:
    store = open_store(postgres_schema_url)
    try:
        _seed(store)
        with pytest.raises(DBAPIError, match="immutable"), _engine(store).begin() as conn:
            conn.exec_driver_sql("TRUNCATE events")
        assert len(store.read_stream("run-0")) == SEED // 2
    finally:
        store.close()


def test_verify_catches_a_changed_byte(store: EventStore, store_url: str, tmp_path: Path) -> None:
    _seed(store)
    ok = _cli(store_url, tmp_path, "events", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout and f"{SEED} events" in ok.stdout

    target = store.read_stream("run-1")[1]
    assert target.data == {"n": 3}
    _tamper(store, f"UPDATE events SET data = replace(data, '3', '4') WHERE position = {target.position}")
    assert store.read_stream("run-1")[1].data == {"n": 4}
    report = store.verify()
    assert report.first_break is not None
    assert (report.first_break.stream, report.first_break.stream_position) == ("run-1", 2)
    broken = _cli(store_url, tmp_path, "events", "verify")
    assert broken.returncode == 1
    assert "'run-1'" in broken.stderr and "position 2" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ("meta = '{{\"actor\":\"mallory\"}}'", "meta"),
        ("type = 'u'", "type"),
        ("id = '{id}'", "id"),
        ("stream_position = 7", "stream_position"),
        ("hash = (SELECT hash FROM events WHERE position = {first})", "hash"),
    ],
)
def test_verify_catches_any_changed_column(store: EventStore, change: str, column: str) -> None:
    written = _seed(store)
    target = written[2]  # run-0, stream position 2
    new_id = "00000000-0000-0000-0000-000000000001"
    if _engine(store).dialect.name == "sqlite":
        new_id = new_id.replace("-", "")
    assignment = change.format(id=new_id, first=written[0].position)
    _tamper(store, f"UPDATE events SET {assignment} WHERE position = {target.position}")
    report = store.verify()
    assert report.first_break is not None, f"a changed {column} went unnoticed"
    assert report.first_break.stream == "run-0"
    assert report.first_break.stream_position == 2


def test_verify_catches_a_changed_clock(store: EventStore) -> None:
    written = _seed(store)
    later = "occurred + interval '1 second'"
    if _engine(store).dialect.name == "sqlite":
        later = "occurred + 1000000"
    _tamper(store, f"UPDATE events SET occurred = {later} WHERE position = {written[5].position}")
    report = store.verify()
    assert report.first_break is not None
    assert (report.first_break.stream, report.first_break.stream_position) == ("run-1", 3)


def test_verify_catches_a_deleted_event(store: EventStore, store_url: str, tmp_path: Path) -> None:
    written = _seed(store)
    last = store.read_stream("run-0")[-1]
    _tamper(store, f"DELETE FROM events WHERE position = {last.position}")
    report = store.verify()
    assert report.first_break is not None
    assert (report.first_break.stream, report.first_break.stream_position) == ("run-0", last.stream_position)
    broken = _cli(store_url, tmp_path, "events", "verify")
    assert broken.returncode == 1
    assert "'run-0'" in broken.stderr and f"position {last.stream_position}" in broken.stderr

    middle = written[3]  # run-1, stream position 2 of 3
    _tamper(store, f"DELETE FROM events WHERE position = {middle.position}")
    report = store.verify()
    assert report.first_break is not None
    assert report.first_break.stream in {"run-0", "run-1"}
    assert store.verify().first_break == report.first_break  # verify itself changes nothing
