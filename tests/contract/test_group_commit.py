"""Group commit (events/grouping.py): appends that wait behind a write go together in one
store append, and each caller still gets exactly its own outcome. Run on both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from ledgerflow.events import (
    ANY,
    NO_STREAM,
    ConcurrencyConflict,
    EventStore,
    InvalidStreamName,
    StoredEvent,
    StoreUnavailable,
    StreamAppend,
)
from ledgerflow.events.grouping import AppendGroups
from tests.contract.support import ev


class HeldStore:
    """The real store, whose first append waits for `release`; records each append's streams.
    With `failing`, every later append raises it instead of writing."""

    def __init__(self, store: EventStore, failing: BaseException | None = None) -> None:
        self.store = store
        self.failing = failing
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        self.calls.append([append.stream for append in appends])
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        elif self.failing is not None:
            raise self.failing
        return self.store.append_streams(appends)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Caller(threading.Thread):
    def __init__(self, groups: AppendGroups, appends: list[StreamAppend]) -> None:
        super().__init__(daemon=True)
        self.groups, self.appends = groups, appends
        self.stored: list[StoredEvent] | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.stored = self.groups.append_streams(self.appends)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def held(store: EventStore, failing: BaseException | None = None) -> tuple[HeldStore, AppendGroups, Caller]:
    """Groups over a held store whose first writer (stream `first`) is inside its append."""
    holding = HeldStore(store, failing)
    groups = AppendGroups(holding)
    first = Caller(groups, [StreamAppend("first", [ev()])])
    assert holding.entered.wait(30)
    return holding, groups, first


def queue(groups: AppendGroups, *appends: list[StreamAppend]) -> list[Caller]:
    """Callers queued in this order behind the held write."""
    callers = []
    for each in appends:
        callers.append(Caller(groups, each))
        wait_for(lambda: groups.waiting == len(callers))
    return callers


def finish(holding: HeldStore, *callers: Caller) -> None:
    holding.release.set()
    for caller in callers:
        caller.join(30)
        assert not caller.is_alive()


def test_appends_waiting_behind_a_write_go_together_and_each_caller_gets_its_own_events(store: EventStore) -> None:
    holding, groups, first = held(store)
    mine = {f"s{n}": [ev(n=n), ev(n=n, second=True)] for n in range(5)}
    callers = queue(groups, *([StreamAppend(stream, events)] for stream, events in mine.items()))
    finish(holding, first, *callers)

    assert holding.calls == [["first"], list(mine)]  # the five waiting appends went as one
    for caller, (stream, events) in zip(callers, mine.items(), strict=True):
        assert caller.error is None
        assert caller.stored is not None
        assert [e.id for e in caller.stored] == [e.id for e in events]
        assert [(e.stream, e.stream_position) for e in caller.stored] == [(stream, 1), (stream, 2)]
        assert [e.id for e in store.read_stream(stream)] == [e.id for e in events]


def test_a_failing_append_fails_only_its_own_caller(store: EventStore) -> None:
    holding, groups, first = held(store)
    good, stale, bad_name, also_good = queue(
        groups,
        [StreamAppend("good", [ev()], NO_STREAM)],
        [StreamAppend("stale", [ev()], 5)],
        [StreamAppend("", [ev()])],
        [StreamAppend("also-good", [ev()]), StreamAppend("good-too", [ev(), ev()], ANY)],
    )
    finish(holding, first, good, stale, bad_name, also_good)

    assert isinstance(stale.error, ConcurrencyConflict) and stale.error.stream == "stale"
    assert isinstance(bad_name.error, InvalidStreamName)
    assert good.error is None and also_good.error is None
    assert good.stored is not None and also_good.stored is not None
    assert [e.stream for e in good.stored] == ["good"]
    assert [e.stream for e in also_good.stored] == ["also-good", "good-too", "good-too"]
    assert store.read_stream("stale") == []
    assert [len(store.read_stream(s)) for s in ("good", "also-good", "good-too")] == [1, 1, 2]


@pytest.mark.parametrize("failing", [StoreUnavailable("the database went away"), KeyboardInterrupt()])
def test_a_failure_that_is_no_appends_fault_reaches_every_caller_of_the_batch_at_once(
    store: EventStore, failing: BaseException,
) -> None:
    holding, groups, first = held(store, failing)
    callers = queue(groups, *([StreamAppend(f"s{n}", [ev()])] for n in range(3)))
    finish(holding, first, *callers)

    assert holding.calls == [["first"], ["s0", "s1", "s2"]]  # one try for the batch, not one per caller
    assert all(c.error is failing for c in callers)
    assert groups.waiting == 0


def test_appends_to_one_stream_never_share_a_batch_and_keep_their_order(store: EventStore) -> None:
    holding, groups, first = held(store)
    one, other, two = queue(
        groups,
        [StreamAppend("shared", [ev(step=1)], NO_STREAM)],
        [StreamAppend("other", [ev()])],
        [StreamAppend("shared", [ev(step=2)], 1)],  # written after the first, on its version
    )
    finish(holding, first, one, other, two)

    assert [c.error for c in (one, other, two)] == [None, None, None]
    assert holding.calls == [["first"], ["shared", "other"], ["shared"]]
    assert [e.data["step"] for e in store.read_stream("shared")] == [1, 2]


def test_a_batch_takes_further_appends_only_up_to_its_event_bound(store: EventStore) -> None:
    holding = HeldStore(store)
    groups = AppendGroups(holding, max_events=3)
    first = Caller(groups, [StreamAppend("first", [ev()])])
    assert holding.entered.wait(30)
    callers = queue(groups, *([StreamAppend(f"s{n}", [ev(), ev()])] for n in range(3)))
    finish(holding, first, *callers)

    assert holding.calls == [["first"], ["s0"], ["s1"], ["s2"]]  # two events each: one per batch
    assert all(c.error is None for c in callers)


def test_many_concurrent_callers_all_land_exactly_once(store: EventStore) -> None:
    callers = 16
    groups = AppendGroups(store)
    threads = [Caller(groups, [StreamAppend(f"c{n}", [ev(n=n, k=k) for k in range(3)], NO_STREAM)]) for n in range(callers)]
    for thread in threads:
        thread.join(60)
    assert all(t.error is None and t.stored is not None and len(t.stored) == 3 for t in threads)
    for n in range(callers):
        assert [(e.data["n"], e.data["k"], e.stream_position) for e in store.read_stream(f"c{n}")] == \
            [(n, k, k + 1) for k in range(3)]
    assert groups.waiting == 0
