"""Futures, `.submit()`, `.map()` and `wait()` as Prefect 3 has them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ledgerflow import (
    MappingLengthMismatch,
    MappingMissingIterable,
    State,
    TaskFutureList,
    as_completed,
    flow,
    task,
    unmapped,
    wait,
)
from ledgerflow.events import EventStore
from tests.prefect.conftest import events_of

GATE = threading.Event()


@task
def slow_source() -> int:
    GATE.wait(30)
    return 20


@task
def plus(x: int, y: int = 1) -> int:
    return x + y


def test_submit_with_futures_as_inputs_returns_at_once(log: EventStore) -> None:
    seen: dict[str, Any] = {}

    @flow
    def pipeline() -> int:
        GATE.clear()
        upstream = slow_source.submit()
        downstream = plus.submit(upstream, 2)  # must not wait for slow_source here
        seen["downstream_done_at_submit"] = downstream.done()
        seen["upstream_done_at_submit"] = upstream.done()
        GATE.set()
        value: int = downstream.result()
        return value

    assert pipeline() == 22
    assert seen == {"downstream_done_at_submit": False, "upstream_done_at_submit": False}


def test_map_returns_a_future_list_and_maps_over_what_tasks_return(log: EventStore) -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @flow
    def mapping() -> dict[str, Any]:
        futures = plus.map(numbers.submit())  # a future as the iterable
        assert isinstance(futures, TaskFutureList)
        futures.wait()
        from_state = plus.map(numbers(return_state=True), y=unmapped(10))  # a state as the iterable
        from_list = plus.map(numbers())  # a list another task returned
        states = plus.map([5, 6], return_state=True)
        return {
            "future": futures.result(),
            "state": from_state.result(),
            "list": from_list.result(),
            "states": [type(s).__name__ for s in states] + [s.name for s in states],
        }

    assert mapping() == {"future": [2, 3, 4], "state": [11, 12, 13], "list": [2, 3, 4],
                         "states": ["State", "State", "Completed", "Completed"]}


def test_map_never_maps_over_defaults_and_raises_prefects_errors(log: EventStore) -> None:
    @task
    def scale(values: list[int], factor: list[int] = [1, 1]) -> int:  # noqa: B006 - the case under test
        return sum(values) * len(factor)

    @flow
    def mapping() -> list[int]:
        values: list[int] = scale.map([[1, 2], [3, 4]]).result()
        return values

    assert mapping() == [6, 14]

    @flow
    def no_iterable() -> None:
        plus.map(1)

    with pytest.raises(MappingMissingIterable):
        no_iterable()

    @flow
    def mismatch() -> None:
        plus.map([1, 2], [1, 2, 3])

    with pytest.raises(MappingLengthMismatch):
        mismatch()


def test_submit_with_return_state_gives_the_final_state(log: EventStore) -> None:
    @task
    def boom() -> None:
        raise ValueError("no")

    @flow
    def states() -> list[str]:
        ok = plus.submit(1, return_state=True)
        bad = boom.submit(return_state=True)
        assert isinstance(ok, State) and isinstance(bad, State)
        return [ok.name, bad.name, str(bad.result(raise_on_failure=False))]

    assert states() == ["Completed", "Failed", "no"]


def test_wait_with_a_timeout_returns_and_says_what_is_done(log: EventStore) -> None:
    blocker = threading.Event()

    @task
    def blocked() -> int:
        blocker.wait(30)
        return 1

    @flow
    def waiting() -> list[Any]:
        quick, stuck = plus.submit(1), blocked.submit()
        quick.wait()
        stuck.wait(0.05)  # returns when the timeout passes, without raising
        done, not_done = wait([quick, stuck], timeout=0.05)
        result = [quick in done, stuck in not_done, stuck.state.name]
        blocker.set()
        result.append([f.result() for f in as_completed([quick, stuck])].count(1))
        return result

    assert waiting() == [True, True, "Pending", 1]


def test_a_task_run_waits_for_wait_for_before_it_starts(log: EventStore) -> None:
    order: list[str] = []

    @task
    def first() -> None:
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def ordered() -> None:
        before = first.submit()
        second.submit(wait_for=[before]).wait()

    state = ordered(return_state=True)
    assert order == ["first", "second"]
    created = [e for e in events_of(log, state.flow_run_id, "task-run.created")]
    assert created[1].data["upstream"] == [created[0].data["task_run_id"]]
