"""States and how a flow's return value decides its final state (Prefect's rules)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ledgerflow import (
    Completed,
    Failed,
    FailedRun,
    State,
    StateType,
    UnfinishedRun,
    allow_failure,
    flow,
    opaque,
    quote,
    task,
)
from ledgerflow.events import EventStore
from tests.prefect.conftest import events_of, task_states


@task
def always_fails() -> None:
    raise ValueError("I fail successfully")


@task
def always_succeeds() -> str:
    return "success"


def test_a_returned_future_decides_the_final_state(log: EventStore) -> None:
    @flow
    def returns_the_good_future() -> Any:
        x = always_fails.submit().result(raise_on_failure=False)
        return always_succeeds.submit(wait_for=[x])

    state = returns_the_good_future(return_state=True)
    assert state.is_completed()
    assert isinstance(state.result(), State) and state.result().result() == "success"

    @flow
    def returns_both() -> Any:
        return always_fails.submit(), always_succeeds.submit()

    state = returns_both(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."
    with pytest.raises(ValueError, match="I fail successfully"):
        state.result()
    assert events_of(log, state.flow_run_id, "flow-run.")[-1].type == "flow-run.Failed"


def test_a_tuple_of_futures_is_resolved_to_states(log: EventStore) -> None:
    @flow
    def two() -> Any:
        return always_succeeds.submit(), always_succeeds.submit()

    result = two()
    assert isinstance(result, tuple) and [s.result() for s in result] == ["success", "success"]


def test_a_manual_state_is_the_outcome_with_its_custom_name(log: EventStore) -> None:
    @flow
    def maybe(work_to_do: bool) -> State:
        if not work_to_do:
            return Completed(message="No work to do", name="Skipped")
        return Failed(message="How did this happen!?")

    skipped = maybe(False, return_state=True)
    assert skipped.is_completed() and skipped.name == "Skipped" and skipped.message == "No work to do"
    last = events_of(log, skipped.flow_run_id, "flow-run.")[-1]
    assert last.type == "flow-run.Completed" and last.data["state_name"] == "Skipped"
    failed = maybe(True, return_state=True)
    assert failed.is_failed()
    with pytest.raises(FailedRun, match="How did this happen"):
        failed.result()


def test_downstream_of_a_failed_upstream_does_not_run(log: EventStore) -> None:
    ran: list[str] = []

    @task
    def consume(value: Any) -> str:
        ran.append(repr(value))
        return "consumed"

    @flow
    def pipeline() -> list[str]:
        broken = always_fails.submit()
        blocked = consume.submit(broken)
        allowed = consume.submit(allow_failure(broken))
        blocked.wait()
        with pytest.raises(UnfinishedRun):
            blocked.result()
        return [blocked.state.name, blocked.state.type.value, allowed.result()]

    state = pipeline(return_state=True)
    assert state.result() == ["NotReady", "PENDING", "consumed"]
    assert ran == ["ValueError('I fail successfully')"]  # only the allow_failure run ran
    assert sorted(task_states(log, state.flow_run_id).values()) == ["Completed", "Failed", "NotReady"]


def test_quote_and_opaque_pass_values_through_untouched(log: EventStore) -> None:
    @task
    def kinds(value: Any) -> str:
        return type(value).__name__

    class Client:
        pass

    @flow
    def wrapped() -> list[Any]:
        future = always_succeeds.submit()
        return [kinds(quote([future])), kinds(opaque(Client())), kinds(quote(future))]

    assert wrapped() == ["list", "Client", "TaskFuture"]


def test_state_results_sync_and_awaited() -> None:
    state = Completed(data={"rows": 3})
    assert state.result() == {"rows": 3} and state.data == {"rows": 3}
    assert state.state_details.flow_run_id is None and state.type == StateType.COMPLETED

    async def in_async_code() -> Any:
        return await state.result(), await state.aresult()

    assert asyncio.run(in_async_code()) == ({"rows": 3}, {"rows": 3})
    custom = State(StateType.COMPLETED, name="Skipped", message="nothing new", data=[1])
    assert (custom.name, custom.message, custom.result()) == ("Skipped", "nothing new", [1])
    failed = Failed(message="broke")
    with pytest.raises(FailedRun, match="broke"):
        failed.result()
    assert isinstance(failed.result(raise_on_failure=False), FailedRun)
