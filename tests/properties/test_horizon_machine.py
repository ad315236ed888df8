"""The PostgreSQL feed never skips an event, proven with real open transactions.

Several writer connections hold transactions open across steps while they append through the
store's own append path, commit or roll back in any order, and a reader polls the feed in
between. Hypothesis searches the interleavings. The control scripts the late-commit case through
the same machine: the naive `position > last` reader must fail its checks, so they have teeth.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from ledgerflow.events import NewEvent, StreamAppend, open_store
from ledgerflow.events.postgres import PostgresEventStore
from ledgerflow.events.appending import DuplicateEvent, StaleHead, plan_appends

WRITERS = 3
STREAMS = ["a", "b"]


class HorizonReader:
    """The store's own feed: `(tx_id, position)` order below the transaction horizon."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.cursor: str | None = None

    def read(self) -> list[tuple[str, int, Any]]:
        events = self.store.read_all(after=self.cursor, limit=10_000)
        if events:
            self.cursor = events[-1].cursor
        return [(e.stream, e.stream_position, e.id) for e in events]


class NaiveReader:
    """What the horizon replaces: `position > last`, which skips late commits."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store, self.last = store, 0

    def read(self) -> list[tuple[str, int, Any]]:
        with self.store._writers.connection() as conn:
            rows = conn.execute(
                "SELECT stream, stream_position, id, position FROM events "
                "WHERE position > %s ORDER BY position",
                (self.last,),
            ).fetchall()
        if rows:
            self.last = rows[-1][3]
        return [(stream, version, event_id) for stream, version, event_id, _ in rows]


def make_machine(url: str, reader: Callable[[PostgresEventStore], Any]) -> type[RuleBasedStateMachine]:
    class FeedMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store: PostgresEventStore = open_store(url)  # type: ignore[assignment]
            with self.store._writers.connection() as conn:
                conn.execute("TRUNCATE streams")
                conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_truncate")
                conn.execute("TRUNCATE events RESTART IDENTITY")
                conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_truncate")
            args, kwargs = self.store._connect_args
            kwargs = {k: v for k, v in kwargs.items() if k != "context"}
            self.writers = [psycopg.connect(*args, **kwargs) for _ in range(WRITERS)]
            for conn in self.writers:
                conn.execute("SET lock_timeout = '20ms'")
                conn.commit()
            self.pending: list[list[Any]] = [[] for _ in range(WRITERS)]
            self.committed: set[Any] = set()
            self.open = [False] * WRITERS
            self.delivered: list[tuple[str, int, Any]] = []
            self.reader = reader(self.store)

        @precondition(lambda self: not all(self.open))
        @rule(
            data=st.data(),
            streams=st.lists(st.sampled_from(STREAMS), min_size=1, max_size=2, unique=True),
            size=st.integers(1, 3),
        )
        def append(self, data: st.DataObject, streams: list[str], size: int) -> None:
            """The store's append path in a transaction left open until `commit`/`rollback`.

            One append per transaction, as the store does: the head update is its first write.
            """
            w = data.draw(st.sampled_from([i for i in range(WRITERS) if not self.open[i]]))
            plan = plan_appends(
                [StreamAppend(stream, [NewEvent(type="t") for _ in range(size)]) for stream in streams]
            )
            conn = self.writers[w]
            try:
                stored, _ = self.store._write_transaction(conn, plan)
            except (psycopg.errors.LockNotAvailable, StaleHead, DuplicateEvent):
                conn.rollback()  # a head is locked by an open transaction: a conflict
                return
            self.open[w] = True
            self.pending[w] = [event.id for event in stored]

        def _an_open_writer(self, data: st.DataObject) -> int:
            return data.draw(st.sampled_from([i for i in range(WRITERS) if self.open[i]]))

        @precondition(lambda self: any(self.open))
        @rule(data=st.data())
        def commit(self, data: st.DataObject) -> None:
            self._commit(self._an_open_writer(data))

        @precondition(lambda self: any(self.open))
        @rule(data=st.data())
        def rollback(self, data: st.DataObject) -> None:
            w = self._an_open_writer(data)
            self.writers[w].rollback()
            self.pending[w], self.open[w] = [], False

        def _commit(self, w: int) -> None:
            self.writers[w].commit()
            self.committed.update(self.pending[w])
            self.pending[w], self.open[w] = [], False

        @rule()
        def poll(self) -> None:
            self.delivered.extend(self.reader.read())

        @invariant()
        def nothing_uncommitted_or_repeated(self) -> None:
            ids = [event_id for _, _, event_id in self.delivered]
            assert len(ids) == len(set(ids)), "an event was delivered twice"
            assert set(ids) <= self.committed, "an uncommitted event was delivered"

        @invariant()
        def streams_in_order(self) -> None:
            last: dict[str, int] = {}
            for stream, position, _ in self.delivered:
                assert position > last.get(stream, 0), f"{stream} v{position} after v{last[stream]}"
                last[stream] = position

        def teardown(self) -> None:
            try:
                for w in range(WRITERS):
                    self._commit(w)
                # The horizon is cluster-wide: another session's open write transaction may hold
                # the last commits back for a moment (a stall, never a skip), so drain a while.
                deadline = time.monotonic() + 10
                while True:
                    self.poll()
                    delivered = {event_id for _, _, event_id in self.delivered}
                    if delivered >= self.committed or time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                assert delivered == self.committed, (
                    f"reader missed committed events: {len(self.committed - delivered)}"
                )
            finally:
                for conn in self.writers:
                    conn.close()
                self.store.close()

    return FeedMachine


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def test_horizon_reader_never_skips(postgres_schema_url: str) -> None:
    run_state_machine_as_test(make_machine(postgres_schema_url, HorizonReader), settings=SETTINGS)


class _Pick:
    """Stands in for hypothesis' `data` when a scenario is scripted."""

    def __init__(self, value: int) -> None:
        self.value = value

    def draw(self, _strategy: object) -> int:
        return self.value


def _late_commit(machine: RuleBasedStateMachine) -> None:
    """Position 1 commits after position 2 has been read: the case a naive reader skips."""
    machine.append(_Pick(0), ["a"], 1)  # type: ignore[attr-defined]
    machine.append(_Pick(1), ["b"], 1)  # type: ignore[attr-defined]
    machine.commit(_Pick(1))  # type: ignore[attr-defined]
    machine.poll()  # type: ignore[attr-defined]
    machine.commit(_Pick(0))  # type: ignore[attr-defined]
    machine.teardown()


def test_naive_reader_skips_control(postgres_schema_url: str) -> None:
    """The machine's checks catch a real skip: the naive reader fails them, the horizon does not."""
    with pytest.raises(AssertionError, match="missed committed events"):
        _late_commit(make_machine(postgres_schema_url, NaiveReader)())
    _late_commit(make_machine(postgres_schema_url, HorizonReader)())
