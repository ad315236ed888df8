"""Integrity and recovery as an operator meets them: a damaged SQLite file, backups with
`ledgerflow events export` / `import` between SQLite and PostgreSQL, damaged projection tables.
Real processes, real files, real PostgreSQL."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy.engine import make_url

from ledgerflow.events import NewEvent, StreamAppend, open_store
from testdata.synthetic import random_run


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True, env=env, timeout=300,
        check=False,
    )


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    home = tmp_path / f"home-{abs(hash(url))}"
    return {**environ, "LEDGERFLOW_HOME": str(home), "LEDGERFLOW_DATABASE_URL": url, "NO_COLOR": "1",
            "COLUMNS": "200"}


def fill(url: str, runs: int, seed: int = 7) -> None:
    """`runs` flow runs of the shapes the runtime writes, one stream each (some subflows)."""
    rng = random.Random(seed)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    store = open_store(url)
    try:
        parent = None
        for n in range(runs):
            made = random_run(rng, clock, tasks=6, logs_per_task=1, parent=parent if n % 10 == 9 else None)
            clock = made.clock
            parent = made
            store.append_streams([StreamAppend(made.stream, made.events)])
    finally:
        store.close()


def append_order(url: str, number: int) -> None:
    store = open_store(url)
    try:
        store.append("orders", [NewEvent(type="order.placed", data={"number": number})])
    finally:
        store.close()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr


def garbled_copy(source: Path, target: Path) -> None:
    """A copy with 8 KB of random bytes in the middle of the file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    middle = target.stat().st_size // 2 // 4096 * 4096
    with target.open("r+b") as file:
        file.seek(middle)
        file.write(random.Random(1).randbytes(8192))


def test_a_garbled_sqlite_file_fails_verify_and_every_command_says_so_in_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good" / "ledgerflow.db"
    good.parent.mkdir()
    fill(f"sqlite:///{good}", 200)
    intact = run(env_for(tmp_path, f"sqlite:///{good}"), "events", "verify")
    assert intact.returncode == 0 and "intact" in intact.stdout, intact.stderr

    bad = tmp_path / "bad" / "ledgerflow.db"
    garbled_copy(good, bad)
    env = env_for(tmp_path, f"sqlite:///{bad}")
    verify = run(env, "events", "verify")
    assert verify.returncode == 1
    assert_one_line_error(verify, "damaged", "ledgerflow events import")
    assert "intact" not in verify.stdout
    assert_one_line_error(run(env, "flow-run", "ls"), "damaged")
    assert_one_line_error(run(env, "projections", "rebuild"), "damaged")


def test_a_file_that_is_not_a_database_is_named_as_such(tmp_path: Path) -> None:
    bad = tmp_path / "x.db"
    bad.write_bytes(random.Random(2).randbytes(16384))
    env = env_for(tmp_path, f"sqlite:///{bad}")
    for command in (["events", "verify"], ["flow-run", "ls"], ["projections", "rebuild"], ["events", "export"]):
        assert_one_line_error(run(env, *command), "not a database")


def events_of(url: str) -> list[tuple[object, ...]]:
    store = open_store(url)
    try:
        return [(e.id, e.stream, e.stream_position, e.type, e.occurred, e.data, e.meta, e.hash)
                for e in store.iter_all()]
    finally:
        store.close()


def test_export_from_sqlite_import_into_postgres_and_back(tmp_path: Path, postgres_schema_url: str) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'source.db'}"
    fill(sqlite_url, 60)
    source, postgres = env_for(tmp_path, sqlite_url), env_for(tmp_path, postgres_schema_url)
    backup = tmp_path / "backup.jsonl"

    exported = run(source, "events", "export")
    assert exported.returncode == 0, exported.stderr
    backup.write_text(exported.stdout)
    lines = exported.stdout.splitlines()
    assert len(lines) == len(events_of(sqlite_url)) > 60
    assert f"exported {len(lines):,} events" in exported.stderr

    imported = run(postgres, "events", "import", str(backup))
    assert imported.returncode == 0, imported.stderr
    assert f"imported {len(lines):,} events" in imported.stderr
    assert events_of(postgres_schema_url) == events_of(sqlite_url)
    for env in (source, postgres):
        verify = run(env, "events", "verify")
        assert verify.returncode == 0 and "intact" in verify.stdout, verify.stderr
    listed = run(source, "flow-run", "ls", "--limit", "100")
    assert listed.returncode == 0 and listed.stdout.count("\n") > 60, listed.stderr
    assert run(postgres, "flow-run", "ls", "--limit", "100").stdout == listed.stdout

    again = run(postgres, "events", "import", str(backup))
    assert again.returncode == 0, again.stderr
    assert "imported 0 events" in again.stderr and f"{len(lines):,} were already stored" in again.stderr
    assert len(events_of(postgres_schema_url)) == len(lines)

    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    round_trip = tmp_path / "round-trip.jsonl"
    round_trip.write_text(run(postgres, "events", "export").stdout)
    assert run(env_for(tmp_path, back_url), "events", "import", str(round_trip)).returncode == 0
    assert events_of(back_url) == events_of(sqlite_url)


def test_export_after_a_cursor_continues_an_earlier_backup(tmp_path: Path) -> None:
    source_url, target_url = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    fill(source_url, 5)
    append_order(source_url, 1)
    source, target = env_for(tmp_path, source_url), env_for(tmp_path, target_url)
    first = run(source, "events", "export")
    cursor = orjson.loads(first.stdout.splitlines()[-1])["cursor"]
    assert f"--after {cursor}" in first.stderr
    fill(source_url, 5, seed=8)
    append_order(source_url, 2)
    later = run(source, "events", "export", "--after", cursor)
    assert later.returncode == 0 and later.stdout and later.stdout not in first.stdout
    (tmp_path / "1.jsonl").write_text(first.stdout)
    (tmp_path / "2.jsonl").write_text(later.stdout)

    out_of_order = run(target, "events", "import", str(tmp_path / "2.jsonl"))
    assert_one_line_error(out_of_order, "import the earlier export first")
    assert events_of(target_url) == []
    for part in ("1.jsonl", "2.jsonl"):
        assert run(target, "events", "import", str(tmp_path / part)).returncode == 0
    assert events_of(target_url) == events_of(source_url)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("data", "does not match its hash"),
        ("drop", "missing or out of order"),
        ("json", "line 40: not JSON"),
        ("id", "does not match its hash"),
    ],
)
def test_a_tampered_export_is_refused_by_line_and_writes_nothing(
    tmp_path: Path, postgres_schema_url: str, change: str, message: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    fill(source_url, 10)
    lines = run(env_for(tmp_path, source_url), "events", "export").stdout.splitlines()
    record = orjson.loads(lines[39])
    if change == "data":
        record["data"]["state_name"] = "Completed"
        lines[39] = orjson.dumps(record).decode()
    elif change == "id":
        record["id"] = "00000000-0000-4000-8000-000000000000"
        lines[39] = orjson.dumps(record).decode()
    elif change == "drop":
        del lines[39]
    else:
        lines[39] = lines[39][:-5]
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")

    refused = run(env_for(tmp_path, postgres_schema_url), "events", "import", str(tampered))
    assert_one_line_error(refused, message, "line 40")
    assert events_of(postgres_schema_url) == []


def test_an_import_that_contradicts_the_target_is_refused(tmp_path: Path) -> None:
    """Two stores with different histories of the same stream: neither overwrites the other."""
    a_url, b_url = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    for url in (a_url, b_url):
        store = open_store(url)
        store.append("orders", [NewEvent(type="order.placed", data={"in": url[-4:]})])
        store.close()
    backup = tmp_path / "a.jsonl"
    backup.write_text(run(env_for(tmp_path, a_url), "events", "export").stdout)
    before = events_of(b_url)
    refused = run(env_for(tmp_path, b_url), "events", "import", str(backup))
    assert_one_line_error(refused, "holds a different orders#1")
    assert events_of(b_url) == before


def schema_of(url: str) -> str:
    options = make_url(url).query["options"]
    assert isinstance(options, str)
    return options.split("=", 1)[1]


def damage_projection_tables(url: str) -> None:
    """A table dropped, rows deleted and rows garbled, behind ledgerflow's back."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        import sqlite3

        with sqlite3.connect(path) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'p_%'")]
            _damage(conn, tables)
        return
    server = make_url(url).set(query={}).render_as_string(hide_password=False)
    schema = schema_of(url)
    with psycopg.connect(server, autocommit=True) as pg:
        pg.execute(f"SET search_path={schema}")
        tables = [r[0] for r in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname=%s AND tablename LIKE 'p\\_%%'", [schema])]
        _damage(pg, tables)


def _damage(conn: object, tables: list[str]) -> None:
    flow_runs = next(t for t in tables if t.endswith("_flow_runs"))
    task_runs = next(t for t in tables if t.endswith("_task_runs"))
    lineage = next(t for t in tables if t.endswith("_edges"))
    execute = conn.execute  # type: ignore[attr-defined]
    execute(f"UPDATE {flow_runs} SET state_name = 'Bogus', flow_name = 'garbled'")
    execute(f"DELETE FROM {task_runs}")
    execute(f"DROP TABLE {lineage}")


def test_projections_rebuild_recovers_damaged_projection_tables(tmp_path: Path, store_url: str) -> None:
    fill(store_url, 30)
    env = env_for(tmp_path, store_url)
    listed = run(env, "flow-run", "ls", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    some_run = listed.stdout.splitlines()[1].split()[0]
    inspected = run(env, "flow-run", "inspect", some_run)
    assert inspected.returncode == 0, inspected.stderr

    damage_projection_tables(store_url)
    damaged = run(env, "flow-run", "ls", "--limit", "100")
    assert "Bogus" in damaged.stdout or damaged.returncode != 0
    lineage = run(env, "flow-run", "lineage", some_run)
    assert_one_line_error(lineage, "projections rebuild")

    rebuilt = run(env, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert run(env, "flow-run", "ls", "--limit", "100").stdout == listed.stdout
    assert run(env, "flow-run", "inspect", some_run).stdout == inspected.stdout
    assert run(env, "flow-run", "lineage", some_run).returncode == 0

    drop_checkpoints(store_url)
    assert run(env, "flow-run", "ls", "--limit", "100").stdout == listed.stdout


def drop_checkpoints(url: str) -> None:
    """The projections' own bookkeeping lost: the next command rebuilds from the log."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("DROP TABLE projection_checkpoints")
        return
    server = make_url(url).set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(server, autocommit=True) as pg:
        pg.execute(f"DROP TABLE {schema_of(url)}.projection_checkpoints")


def test_verify_names_a_missing_immutability_trigger(tmp_path: Path, store_url: str) -> None:
    fill(store_url, 2)
    env = env_for(tmp_path, store_url)
    assert run(env, "events", "verify").returncode == 0
    if store_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            conn.execute("DROP TRIGGER events_no_delete")
        missing = "events_no_delete"
    else:
        server = make_url(store_url).set(query={}).render_as_string(hide_password=False)
        with psycopg.connect(server, autocommit=True) as pg:
            pg.execute(f"ALTER TABLE {schema_of(store_url)}.events DISABLE TRIGGER events_immutable")
        missing = "events_immutable"
    verify = run(env, "events", "verify")
    assert verify.returncode == 1
    assert_one_line_error(verify, f"trigger {missing}", "missing or disabled")
