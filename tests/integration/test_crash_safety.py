"""A writer killed with SIGKILL in the middle of an append leaves no partial batch behind.

The writer appends batches of 100 events, alternating one stream (PostgreSQL: one statement)
and two streams (one transaction). Every event carries its batch number and the batch size, so
completeness is checkable. The test kills the writer at a moment the database shows it inside
a write transaction, twice per database, then reads everything back.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter

import psycopg
from sqlalchemy.engine import make_url

from ledgerflow.events import NewEvent, open_store

BATCH = 100
WRITER = textwrap.dedent(
    f"""
    import sys
    from ledgerflow.events import NewEvent, StreamAppend, open_store

    store = open_store(sys.argv[1])
    batch = int(sys.argv[2])
    while True:
        events = [
            NewEvent(type="crash.test", data={{"batch": batch, "size": {BATCH}, "i": i, "pad": "x" * 4000}})
            for i in range({BATCH})
        ]
        print("begin", batch, flush=True)
        if batch % 2:
            store.append_streams([StreamAppend(f"a-{{batch % 3}}", events[:40]),
                                  StreamAppend(f"b-{{batch % 5}}", events[40:])])
        else:
            store.append(f"a-{{batch % 3}}", events)
        batch += 1
    """
)


def _mid_write(url: str) -> bool:
    """Is the writer (the only client of the SQLite file, or of its application name on
    PostgreSQL) inside a write transaction right now?"""
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return True
        finally:
            conn.close()
    parsed = make_url(url)
    with psycopg.connect(parsed.set(query={}).render_as_string(hide_password=False), autocommit=True) as pg:
        row = pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND (state = 'idle in transaction' OR (state = 'active' AND query ILIKE '%%insert into events%%'))",
            (parsed.query["application_name"],),
        ).fetchone()
    return bool(row and row[0])


def _slow_inserts(url: str) -> None:
    """Make each INSERT into events take 50 ms on PostgreSQL, so that a kill can be aimed
    inside a two-stream append's transaction (a single statement runs to its end regardless)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION crash_test_slow() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER crash_test_slow AFTER INSERT ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION crash_test_slow()"
        )


def _kill_mid_batch(url: str, first_batch: int) -> int:
    """Run a writer from `first_batch`; kill it inside the write of a two-stream batch (odd
    numbers); return the batch it was writing."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(first_batch)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    begun: list[int] = []
    reader = threading.Thread(target=lambda: begun.extend(int(line.split()[1]) for line in writer.stdout))  # type: ignore[union-attr]
    reader.start()
    try:
        while not (len(begun) > 3 and begun[-1] % 2 and _mid_write(url)):
            assert writer.poll() is None, "the writer died by itself"
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
        reader.join(timeout=30)
        writer.stdout.close()
    # PostgreSQL ends the dead client's transaction once it notices the closed socket; until
    # then that transaction holds the feed back (events/postgres.py), so wait for it.
    deadline = time.monotonic() + 60
    while _mid_write(url):
        assert time.monotonic() < deadline, "the killed writer's transaction never ended"
    return begun[-1]


def test_no_partial_batch_survives_a_kill(store_url: str) -> None:
    if store_url.startswith("postgresql"):  # tell our writer apart from other clients of the server
        name = f"crash-writer-{uuid.uuid4().hex[:8]}"
        store_url = make_url(store_url).update_query_dict({"application_name": name}).render_as_string(
            hide_password=False
        )
    open_store(store_url).close()  # create the schema before the writer races us for it
    postgres = store_url.startswith("postgresql")
    if postgres:
        _slow_inserts(store_url)
    killed = [_kill_mid_batch(store_url, 0)]
    killed.append(_kill_mid_batch(store_url, killed[-1] + 1))

    store = open_store(store_url)
    try:
        events = list(store.iter_all(batch=5_000))
        sizes = Counter(event.data["batch"] for event in events)
        for batch, count in sizes.items():
            assert count == BATCH, f"batch {batch}: {count} of {BATCH} events visible"
        finished = set(range(killed[0])) | set(range(killed[0] + 1, killed[1]))
        assert finished <= set(sizes), "a batch that finished before the kill is missing"
        assert set(sizes) <= finished | set(killed)
        if postgres:  # the kill landed inside an open transaction, which the server rolled back
            assert not set(sizes) & set(killed)
        for event in events:
            assert event.data["size"] == BATCH
        assert store.verify().intact
        (after,) = store.append("a-0", [NewEvent(type="after.crash")])  # the log still takes writes
        assert after.stream_position == len(store.read_stream("a-0"))
        assert store.verify().intact
    finally:
        store.close()
