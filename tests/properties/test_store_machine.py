"""The store behaves like a list of events: a hypothesis machine against a plain model.

Random appends (right and wrong expected versions, repeated ids, several streams at once),
reads (by stream, paged by cursor, filtered by type) and subscriptions polled along the way
(one on the writing store, one on a second store over the same database, one filtered), all
checked against a model that is a list of stored events and a dict of stream versions.

Examples share one database: each example names its streams afresh and reads the feed after
the newest cursor the examples before it wrote, which every later append is ordered after.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections.abc import Callable
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledgerflow.events import (
    ANY,
    NO_STREAM,
    ConcurrencyConflict,
    Cursor,
    EventStore,
    NewEvent,
    StoredEvent,
    StreamAppend,
)
from ledgerflow.events.model import ExpectedVersion
from ledgerflow.events.typefilter import TypePatterns
from tests.contract.support import caught_up

STREAMS = ["a", "b", "c"]
TYPES = ["task-run.Running", "task-run.Failed", "flow-run.Running", "log.emitted", "task_run.odd"]
PATTERNS = ["task-run.*", "*.Running", "log.emitted", "flow-run.*", "task_run.*"]
FILTER = ["task-run.*"]
payloads = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10), st.booleans(), st.none()),
    max_size=3,
)


def _in_feed_order(events: list[StoredEvent]) -> None:
    cursors = [Cursor.parse(e.cursor) for e in events]
    assert all(a < b for a, b in itertools.pairwise(cursors)), "cursors do not strictly increase"
    positions = [e.position for e in events]
    assert all(a < b for a, b in itertools.pairwise(positions)), "positions do not increase in cursor order"


def make_machine(store: EventStore, other: EventStore) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        examples: ClassVar[int] = 0
        newest: ClassVar[str] = "0.0"  # the newest cursor any earlier example wrote

        def __init__(self) -> None:
            super().__init__()
            cls = type(self)
            cls.examples += 1
            self.prefix = f"e{cls.examples}-"
            # An append the model missed (a failed example) must not leak into this one's feed.
            self.start = str(max(Cursor.parse(cls.newest), Cursor.parse(store.head())))
            self.store, self.other = store, other
            self.log: list[StoredEvent] = []  # the model: stored events in global order
            self.versions: dict[str, int] = {}
            self.by_id: dict[uuid.UUID, StoredEvent] = {}
            self.sent: list[NewEvent] = []
            self.subscriptions = {
                "same store": (self.store.subscribe(after=self.start), None),
                "other store": (self.other.subscribe(after=self.start), None),
                "filtered": (self.store.subscribe(after=self.start, types=FILTER), TypePatterns.parse(FILTER)),
            }
            self.delivered: dict[str, list[StoredEvent]] = {name: [] for name in self.subscriptions}

        def teardown(self) -> None:
            if sys.exc_info()[0] is None:  # a failed step's error must not be masked by this check
                self._drain()
            for subscription, _ in self.subscriptions.values():
                subscription.close()

        def _wanted(self, name: str) -> list[StoredEvent]:
            patterns = self.subscriptions[name][1]
            return [e for e in self.log if patterns is None or patterns.matches(e.type)]

        def _expected(self, data: st.DataObject, stream: str) -> tuple[ExpectedVersion, bool]:
            actual = self.versions.get(stream, 0)
            choices: list[ExpectedVersion] = [ANY, actual, ANY, actual, NO_STREAM, actual + 1, max(actual - 1, 0)]
            expected = data.draw(st.sampled_from(choices), label="expected")
            ok = expected == ANY or (expected == NO_STREAM and actual == 0) or expected == actual
            return expected, ok

        def _new_events(self, data: st.DataObject) -> list[NewEvent]:
            events = []
            for _ in range(data.draw(st.integers(1, 3), label="size")):
                # bool(): after a list, mypy would type the draw as that list
                if bool(self.sent) and data.draw(st.booleans(), label="repeat an id"):
                    events.append(data.draw(st.sampled_from(self.sent), label="repeated"))
                else:
                    events.append(
                        NewEvent(type=data.draw(st.sampled_from(TYPES)), data=data.draw(payloads, label="data"))
                    )
            unique = list({event.id: event for event in events}.values())
            self.sent.extend(unique)
            return unique

        @initialize(data=st.data())
        def seed(self, data: st.DataObject) -> None:
            for name in STREAMS:
                self.append(data, [name])

        @rule(data=st.data(), streams=st.lists(st.sampled_from(STREAMS), min_size=1, max_size=2, unique=True))
        def append(self, data: st.DataObject, streams: list[str]) -> None:
            taken: set[uuid.UUID] = set()
            parts = []
            for name in streams:
                stream = self.prefix + name
                expected, ok = self._expected(data, stream)
                events = [e for e in self._new_events(data) if e.id not in taken]
                taken.update(e.id for e in events)
                parts.append((stream, events, expected, ok))
            all_known = all(e.id in self.by_id for _, evs, _, _ in parts for e in evs)
            conflict = not all_known and not all(ok for _, _, _, ok in parts)
            try:
                stored = self.store.append_streams([StreamAppend(s, evs, exp) for s, evs, exp, _ in parts])
            except ConcurrencyConflict:
                assert conflict, "conflict where the model expected none"
                assert self.store.read_stream(parts[0][0]) == [e for e in self.log if e.stream == parts[0][0]]
                return
            assert not conflict, "no conflict where the model expected one"
            assert [e.id for e in stored] == [e.id for _, evs, _, _ in parts for e in evs]
            for stream, events, _, _ in parts:
                for event in events:
                    record = next(s for s in stored if s.id == event.id)
                    if event.id in self.by_id:
                        assert record == self.by_id[event.id], "a repeated id did not return the stored event"
                        continue
                    self.versions[stream] = self.versions.get(stream, 0) + 1
                    assert (record.stream, record.stream_position) == (stream, self.versions[stream])
                    assert record.data == event.data and record.type == event.type
                    self.log.append(record)
                    self.by_id[event.id] = record
                    type(self).newest = record.cursor

        @rule(stream=st.sampled_from(STREAMS), start=st.integers(1, 6), limit=st.none() | st.integers(1, 3))
        def read_stream(self, stream: str, start: int, limit: int | None) -> None:
            expected = [e for e in self.log if e.stream == self.prefix + stream][start - 1 :]
            if limit is not None:
                expected = expected[:limit]
            assert self.store.read_stream(self.prefix + stream, from_version=start, limit=limit) == expected

        @rule(limit=st.integers(1, 7), patterns=st.lists(st.sampled_from(PATTERNS), max_size=2))
        def read_pages(self, limit: int, patterns: list[str]) -> None:
            if self.log:
                caught_up(self.store, self.log[-1].cursor)
            matcher = TypePatterns.parse(patterns)
            wanted = [e for e in self.log if matcher.matches(e.type)]
            pages: list[StoredEvent] = []
            cursor = self.start
            head = self.log[-1].cursor if self.log else self.start
            while True:
                page, next_after = self.store.read_page(after=cursor, limit=limit, types=patterns or None)
                assert page == self.store.read_all(after=cursor, limit=limit, types=patterns or None)
                assert len(page) <= limit
                pages += page
                if len(page) < limit:
                    # Read to the end: the next read starts at the head, past every skipped event.
                    assert next_after == (head if Cursor.parse(head) > Cursor.parse(cursor) else cursor)
                    break
                assert next_after == page[-1].cursor
                cursor = next_after
            assert pages == wanted

        @rule()
        def head(self) -> None:
            if self.log:
                caught_up(self.store, self.log[-1].cursor)
                assert self.store.head() == self.log[-1].cursor
            else:
                assert self.store.head() == self.start

        @rule(name=st.sampled_from(["same store", "other store", "filtered"]))
        def poll_subscription(self, name: str) -> None:
            self.delivered[name] += self.subscriptions[name][0].poll(timeout=0)

        @rule()
        def drain_subscriptions(self) -> None:
            self._drain()

        def _drain(self) -> None:
            for name, (subscription, _) in self.subscriptions.items():
                wanted = self._wanted(name)
                while len(self.delivered[name]) < len(wanted):
                    batch = subscription.poll(timeout=30)
                    assert batch, f"the {name} subscription stopped short of the model"
                    self.delivered[name] += batch
                assert self.delivered[name] == wanted, f"the {name} subscription is not the model's sequence"

        @rule()
        def verify(self) -> None:
            assert self.store.verify().intact

        @invariant()
        def the_log_is_in_feed_order(self) -> None:
            _in_feed_order(self.log)

        @invariant()
        def subscriptions_deliver_a_prefix_of_the_model(self) -> None:
            for name, delivered in self.delivered.items():
                assert delivered == self._wanted(name)[: len(delivered)], f"the {name} subscription diverged"

    return StoreMachine


def test_store_matches_the_model(store_factory: Callable[[], EventStore]) -> None:
    run_state_machine_as_test(
        make_machine(store_factory(), store_factory()),
        settings=settings(
            max_examples=50,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
