"""A durable consumer killed with SIGKILL in the middle of a batch, then restarted.

The consumer runs in its own process and records what it handles (effects shape: event ids
appended to a file; transactional shape: rows inserted in the checkpoint's transaction). Its
handler writes the first half of each batch, then says so on stdout and waits for a go-ahead on
stdin before writing the rest: the test kills it at that moment, so the kill always lands with
half a batch handled and its checkpoint not yet moved. Twice, then a third run finishes. A
watcher samples the stored checkpoint all along. Afterwards every event was handled at least
once (the effects of the killed batch's first half twice, which shows the redelivery),
exactly once in the transactional shape, and the checkpoint never went back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, MetaData, String, Table, select

from ledgerflow.events import Cursor, EventStore, NewEvent, StoredEvent, open_store
from ledgerflow.events import checkpoints
from ledgerflow.events.transactions import engine_of
from tests.contract.support import caught_up

NAME = "killable"
BATCH = 10
CONSUMER = textwrap.dedent(
    f"""
    import sys
    import threading
    from sqlalchemy import text
    from ledgerflow.events import open_store
    from ledgerflow.events.consumer import Consumer, TransactionalConsumer

    url, shape, out = sys.argv[1:4]

    def halfway(upto):
        print("inside", upto, flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("no go-ahead")

    def effects(batch):
        half = len(batch.events) // 2
        with open(out, "a") as f:
            f.writelines(f"{{e.id}}\\n" for e in batch.events[:half])
            f.flush()
            halfway(batch.upto)
            f.writelines(f"{{e.id}}\\n" for e in batch.events[half:])

    def transactional(conn, batch):
        half = len(batch.events) // 2
        insert = text("INSERT INTO handled (id) VALUES (:id)")
        if batch.events[:half]:
            conn.execute(insert, [{{"id": str(e.id)}} for e in batch.events[:half]])
        halfway(batch.upto)
        if batch.events[half:]:
            conn.execute(insert, [{{"id": str(e.id)}} for e in batch.events[half:]])

    store = open_store(url)
    if shape == "effects":
        consumer = Consumer(store, "{NAME}", effects, batch_size={BATCH})
    else:
        consumer = TransactionalConsumer(store, "{NAME}", transactional, batch_size={BATCH})
    consumer.run(threading.Event())
    """
)

handled_rows = Table("handled", MetaData(), Column("id", String(36), nullable=False))


class Watcher:
    """Samples the stored checkpoint every few milliseconds on a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.samples: list[Cursor] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)
        self._thread.start()

    def now(self) -> Cursor:
        with self.engine.connect() as conn:
            return checkpoints.read(conn, NAME) or Cursor(0, 0)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.now())
            time.sleep(0.003)

    def stop(self) -> list[Cursor]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.samples + [self.now()]


def run_consumer(url: str, shape: str, out: Path, watcher: Watcher, *, kill_at: int | None, until: Cursor) -> Cursor | None:
    """Run the consumer process; let it handle batches until its `kill_at`-th batch, where it
    is killed halfway (returning that batch's end), or, without `kill_at`, until the
    checkpoint reaches `until`."""
    process = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, url, shape, str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    batches = 0
    try:
        for line in process.stdout:
            word, upto = line.split()
            assert word == "inside"
            batches += 1
            if batches == kill_at:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return Cursor.parse(upto)
            process.stdin.write("go\n")
            process.stdin.flush()
            if kill_at is None and Cursor.parse(upto) >= until:
                break
        assert kill_at is None, f"the consumer stopped by itself (exit {process.poll()})"
        deadline = time.monotonic() + 60
        while watcher.now() < until:  # the last batch commits after its go-ahead
            assert time.monotonic() < deadline, "the consumer never reached the head"
            time.sleep(0.01)
        return None
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdin.close()
        process.stdout.close()


def append(store: EventStore, count: int, start: int) -> list[StoredEvent]:
    written: list[StoredEvent] = []
    for n in range(start, start + count, 7):
        written += store.append(f"kill-{n % 3}", [NewEvent(type="kill.test", data={"n": i}) for i in range(n, min(n + 7, start + count))])
    caught_up(store, written[-1].cursor)
    return written


@pytest.mark.parametrize("shape", ["effects", "transactional"])
def test_a_consumer_killed_mid_batch_resumes_and_handles_every_event(store_url: str, tmp_path: Path, shape: str) -> None:
    store = open_store(store_url)
    engine = engine_of(store)
    handled_rows.create(engine)
    out = tmp_path / "handled.txt"
    out.touch()
    watcher = Watcher(engine)
    try:
        written = append(store, 60, 0)
        head = Cursor.parse(written[-1].cursor)
        killed = run_consumer(store_url, shape, out, watcher, kill_at=3, until=head)
        assert killed is not None
        stands = watcher.now()
        assert Cursor.parse(written[2 * BATCH - 1].cursor) == stands < killed  # two batches done, not the third

        written += append(store, 45, 60)  # while no consumer runs
        killed = run_consumer(store_url, shape, out, watcher, kill_at=4, until=head)
        assert killed is not None and stands < watcher.now() < killed

        head = Cursor.parse(written[-1].cursor)
        assert run_consumer(store_url, shape, out, watcher, kill_at=None, until=head) is None
    finally:
        samples = watcher.stop()
        store.close()
    assert samples == sorted(samples), "the checkpoint went back"
    assert samples[-1] == head

    if shape == "effects":
        counts = Counter(out.read_text().split())
    else:
        with engine.connect() as conn:
            counts = Counter(conn.execute(select(handled_rows.c.id)).scalars())
        engine.dispose()
    assert set(counts) == {str(e.id) for e in written}  # every event handled
    twice = {event_id for event_id, n in counts.items() if n > 1}
    if shape == "effects":  # at least once: the killed batches' first halves came again
        assert len(twice) == 2 * (BATCH // 2)
    else:  # their transactions died with the process: exactly once
        assert not twice
