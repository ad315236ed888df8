"""Durable consumers against a model, on a real SQLite file and a real PostgreSQL schema.

Hypothesis interleaves appends (of the type the consumers want and of another), catch-ups with
limits, handlers that fail halfway through a batch, handlers overtaken by the other instance,
and restarts, on two instances of each consumer (two processes running one consumer name), for
both handler shapes. After every step, and inside every handler call: the checkpoint never
went back; the transactional consumer's rows are exactly the wanted
events up to its checkpoint, each once; the effects consumer handled at least those, and
nothing it should not have.
"""

from __future__ import annotations

import itertools
from collections import Counter
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import Column, Connection, MetaData, String, Table, Uuid, select

from ledgerflow.events import Cursor, EventStore, NewEvent, StoredEvent
from ledgerflow.events.consumer import BaseConsumer, Batch, Consumer, TransactionalConsumer
from ledgerflow.events.transactions import engine_of
from tests.contract.support import caught_up

WANTED = ["a.*"]
handled_rows = Table(
    "machine_handled", MetaData(), Column("consumer", String(60), nullable=False), Column("id", Uuid(), nullable=False)
)
_names = itertools.count()


class Boom(RuntimeError):
    pass


def make_machine(store: EventStore) -> type[RuleBasedStateMachine]:
    engine = engine_of(store)
    handled_rows.create(engine, checkfirst=True)

    class ConsumerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(_names)
            self.names = {"effects": f"fx-{n}", "transactional": f"tx-{n}"}
            self.start = Cursor.parse(store.head())
            self.appended: list[StoredEvent] = []
            self.effects: list[UUID] = []
            self.failing: set[tuple[str, int]] = set()
            self.overtaken: set[tuple[str, int]] = set()
            self.instances = {
                (shape, i): self._make(shape, i) for shape in self.names for i in range(2)
            }
            self.stood = {shape: self.start for shape in self.names}

        def _make(self, shape: str, i: int) -> BaseConsumer:
            name = self.names[shape]
            if shape == "effects":

                def handle(batch: Batch) -> None:
                    self.note("effects", self.instances["effects", i].checkpoint())
                    if ("effects", i) in self.overtaken:  # the other process runs meanwhile
                        self.overtaken.discard(("effects", i))
                        self.instances["effects", 1 - i].catch_up()
                    if ("effects", i) in self.failing:  # a crash halfway through the batch
                        self.failing.discard(("effects", i))
                        self.effects.extend(e.id for e in batch.events[: len(batch.events) // 2])
                        raise Boom
                    self.effects.extend(e.id for e in batch.events)

                return Consumer(store, name, handle, types=WANTED, batch_size=3, start=self.start)

            def apply(conn: Connection, batch: Batch) -> None:
                # Read on a connection of its own: what is committed, not this transaction's move.
                self.note("transactional", self.instances["transactional", i].checkpoint())
                if batch.events:
                    conn.execute(handled_rows.insert(), [{"consumer": name, "id": e.id} for e in batch.events])
                if batch.events and ("transactional", i) in self.failing:
                    self.failing.discard(("transactional", i))
                    raise Boom

            return TransactionalConsumer(store, name, apply, types=WANTED, batch_size=3, start=self.start)

        @rule(count=st.integers(1, 5), kind=st.sampled_from(["a.one", "a.two", "b.other"]), stream=st.integers(0, 2))
        def append(self, count: int, kind: str, stream: int) -> None:
            self.appended += store.append(f"m-{stream}", [NewEvent(type=kind) for _ in range(count)])

        @rule(shape=st.sampled_from(["effects", "transactional"]), i=st.integers(0, 1),
              limit=st.none() | st.integers(1, 10), fail=st.booleans(), overtaken=st.booleans())
        def catch_up(self, shape: str, i: int, limit: int | None, fail: bool, overtaken: bool) -> None:
            """`fail`: the handler crashes halfway through a batch; `overtaken` (effects only:
            a transactional handler holds the checkpoint's lock): while it handles its first
            batch, the other instance catches up all the way."""
            if fail:
                self.failing.add((shape, i))
            if overtaken and shape == "effects":
                self.overtaken.add((shape, i))
            try:
                self.instances[shape, i].catch_up(limit)
            except Boom:
                pass
            self.failing.discard((shape, i))
            self.overtaken.discard((shape, i))

        @rule(shape=st.sampled_from(["effects", "transactional"]), i=st.integers(0, 1))
        def restart(self, shape: str, i: int) -> None:
            self.instances[shape, i] = self._make(shape, i)

        def wanted_upto(self, cursor: Cursor) -> list[UUID]:
            return [e.id for e in self.appended if e.type.startswith("a.") and Cursor.parse(e.cursor) <= cursor]

        def transactional_rows(self) -> list[UUID]:
            with engine.connect() as conn:
                query = select(handled_rows.c.id).where(handled_rows.c.consumer == self.names["transactional"])
                return list(conn.execute(query).scalars())

        def note(self, shape: str, stands: Cursor) -> None:
            """Also called by the handlers, to see the checkpoint in the middle of a step."""
            assert stands >= self.stood[shape], f"the {shape} checkpoint went back"
            self.stood[shape] = stands

        @invariant()
        def checkpoints_only_move_forward(self) -> None:
            for shape in self.names:
                self.note(shape, self.instances[shape, 0].checkpoint())

        @invariant()
        def transactional_rows_are_the_wanted_events_up_to_the_checkpoint_once(self) -> None:
            expected = Counter(self.wanted_upto(self.instances["transactional", 0].checkpoint()))
            assert Counter(self.transactional_rows()) == expected

        @invariant()
        def effects_cover_the_wanted_events_up_to_the_checkpoint(self) -> None:
            handled = set(self.effects)
            assert set(self.wanted_upto(self.instances["effects", 0].checkpoint())) <= handled
            assert handled <= {e.id for e in self.appended if e.type.startswith("a.")}

        def teardown(self) -> None:
            if self.appended:
                caught_up(store, self.appended[-1].cursor)
            for shape in self.names:
                self.instances[shape, 1].catch_up()
            everything = self.wanted_upto(Cursor.parse(store.head()))
            assert Counter(self.transactional_rows()) == Counter(everything)
            assert set(everything) <= set(self.effects)

    return ConsumerMachine


def test_consumers_match_the_model(store: EventStore) -> None:
    run_state_machine_as_test(
        make_machine(store),
        settings=settings(
            max_examples=25, stateful_step_count=20, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
