"""Flows and tasks: what a call returns and what it leaves in the log."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.events.payloads import FlowRunCreated, LogEmitted, ResultRef, StateChanged, TaskRunCreated, parse_data
from ledgerflow.runtime import (
    NO_CACHE,
    Abort,
    ParameterValidationError,
    Pause,
    PausedRun,
    ThreadPoolTaskRunner,
    exponential_backoff,
    flow,
    get_run_context,
    get_run_logger,
    task,
    task_input_hash,
    unmapped,
)
from ledgerflow.runtime.config import current
from ledgerflow.runtime.context import TaskRunContext
from tests.runtime.conftest import run_events, types_of

PayloadT = TypeVar("PayloadT", bound=BaseModel)


def payload(event: StoredEvent, model: type[PayloadT]) -> PayloadT:
    parsed = parse_data(event)
    assert isinstance(parsed, model)
    return parsed


def result_of(event: StoredEvent) -> ResultRef:
    result = payload(event, StateChanged).result
    assert result is not None
    return result


@task
def add(x: int, y: int) -> int:
    return x + y


@flow
def adding(a: int = 1, b: int = 2) -> int:
    total: int = add(add(a, b), 10)
    return total


def test_a_flow_run_is_one_stream_of_every_transition(runs: EventStore) -> None:
    state = adding(return_state=True)
    assert state.is_completed() and state.result() == 13
    events = [e for e in run_events(runs, state.flow_run_id) if e.type != "log.emitted"]
    assert [e.type for e in events] == [
        "flow-run.created", "flow-run.Running",
        "task-run.created", "task-run.Running", "task-run.Completed",
        "task-run.created", "task-run.Running", "task-run.Completed",
        "flow-run.Completed",
    ]
    created = payload(events[0], FlowRunCreated)
    assert created.flow_name == "adding" and created.parameters == {"a": 1, "b": 2}
    assert created.entrypoint == "tests.runtime.test_flows_and_tasks:adding"  # importable: module form
    assert created.working_dir is not None
    first, second = payload(events[2], TaskRunCreated), payload(events[5], TaskRunCreated)
    assert (first.task_name, first.occurrence, second.occurrence) == ("add", 0, 1)
    assert first.task_key.endswith("test_flows_and_tasks.add")
    assert first.input_hash and first.input_hash != second.input_hash
    result = result_of(events[-1])
    assert result.persisted and result.serializer == "json"
    assert result.key == f"{hashlib.sha256(b'13').hexdigest()}.json"
    assert result.inline and result.value == 13  # small: in the event, no file
    assert current().results.load_ref(result.as_data()) == 13


def test_equal_results_share_one_content_addressed_file(runs: EventStore) -> None:
    @task(cache_policy=NO_CACHE)  # the same call twice: by default the second would be Cached
    def big(n: int) -> list[int]:
        return list(range(n))

    @flow
    def producer() -> int:
        return len(big(1000)) + len(big(1000))

    state = producer(return_state=True)
    done = [result_of(e) for e in run_events(runs, state.flow_run_id) if e.type == "task-run.Completed"]
    assert done[0].key is not None and done[0].key.endswith(".json")
    assert done[0].key == done[1].key  # equal values, one file
    assert current().results.load(done[0].key) == list(range(1000))


def test_results_are_returned_even_when_they_cannot_be_stored(runs: EventStore) -> None:
    lock = threading.Lock()

    @task
    def unpicklable() -> Any:
        return lock

    @flow
    def holder() -> bool:
        return unpicklable() is lock

    state = holder(return_state=True)
    assert state.result() is True
    done = [result_of(e) for e in run_events(runs, state.flow_run_id) if e.type == "task-run.Completed"]
    assert done[0].persisted is False and "cannot be serialised" in (done[0].reason or "")


def test_submit_map_and_lineage(runs: EventStore) -> None:
    @task
    def double(x: int, factor: int = 2) -> int:
        return x * factor

    @task
    def total(values: list[int], offset: list[int]) -> int:
        return sum(values) + sum(offset)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def fan_out() -> int:
        futures = double.map([1, 2, 3], factor=unmapped(10))
        first = double.submit(5)
        assert first.result() == 10 and first.state.is_completed()
        summed: int = total(futures, offset=[first.result()])
        return summed

    state = fan_out(return_state=True)
    assert state.result() == 70
    created = [
        payload(e, TaskRunCreated) for e in run_events(runs, state.flow_run_id) if e.type == "task-run.created"
    ]
    doubles = [c.task_run_id for c in created if c.task_name == "double"]
    (summed,) = [c for c in created if c.task_name == "total"]
    assert set(summed.upstream) == set(doubles[:3])
    assert {c.parameters.get("factor") for c in created if c.task_name == "double"} == {10, 2}


def test_returned_objects_are_lineage_too(runs: EventStore) -> None:
    @task
    def rows() -> list[int]:
        return [1, 2]

    @task
    def count(data: list[int]) -> int:
        return len(data)

    @flow
    def pipeline() -> int:
        counted: int = count(rows())
        return counted

    state = pipeline(return_state=True)
    created = [
        payload(e, TaskRunCreated) for e in run_events(runs, state.flow_run_id) if e.type == "task-run.created"
    ]
    assert created[1].upstream == [created[0].task_run_id]


def test_map_refuses_iterables_of_different_lengths(runs: EventStore) -> None:
    @flow
    def bad() -> None:
        add.map([1, 2], [1])

    with pytest.raises(ValueError, match="different lengths"):
        bad()


def test_retries_with_a_list_of_delays_then_success(runs: EventStore) -> None:
    attempts: list[int] = []

    @task(retries=3, retry_delay_seconds=[0, 0.01, 0.02])
    def flaky() -> str:
        context = get_run_context()
        assert isinstance(context, TaskRunContext)
        attempts.append(context.task_run.attempt)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @flow
    def robust() -> str:
        answer: str = flaky()
        return answer

    state = robust(return_state=True)
    assert state.result() == "ok" and attempts == [1, 2, 3]
    assert types_of(runs, state.flow_run_id, "task-run.") == [
        "task-run.created", "task-run.Running", "task-run.AwaitingRetry", "task-run.Retrying",
        "task-run.AwaitingRetry", "task-run.Retrying", "task-run.Completed",
    ]
    waiting = [
        payload(e, StateChanged) for e in run_events(runs, state.flow_run_id) if e.type == "task-run.AwaitingRetry"
    ]
    assert waiting[0].message == "ConnectionError: try again" and waiting[0].scheduled_time


def test_exhausted_retries_fail_the_task_and_the_flow(runs: EventStore) -> None:
    @task(retries=2, retry_delay_seconds=exponential_backoff(0.001), retry_jitter_factor=0.5)
    def broken() -> None:
        raise ValueError("always")

    @flow
    def doomed() -> None:
        broken()

    state = doomed(return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="always"):
        state.result()
    attempts = types_of(runs, state.flow_run_id, "task-run.")
    assert attempts.count("task-run.Running") == 1 and attempts.count("task-run.Retrying") == 2  # Prefect's names
    assert types_of(runs, state.flow_run_id)[-1] == "flow-run.Failed"
    error = payload(run_events(runs, state.flow_run_id)[-1], StateChanged).error
    assert error is not None
    assert error.type == "ValueError" and "always" in (error.traceback or "")


def test_retry_condition_and_abort_stop_retries(runs: EventStore) -> None:
    calls: list[str] = []

    @task(retries=5, retry_condition_fn=lambda task, run, state: "transient" in (state.message or ""))
    def api(kind: str) -> None:
        calls.append(kind)
        if kind == "abort":
            raise Abort("stop now")
        raise RuntimeError(kind)

    @flow
    def caller(kind: str) -> None:
        api(kind)

    for kind, expected_calls in [("permanent", 1), ("abort", 1), ("transient", 6)]:
        calls.clear()
        assert caller(kind, return_state=True).is_failed()
        assert len(calls) == expected_calls, kind


def test_timeouts_end_in_timed_out_and_are_retried(runs: EventStore) -> None:
    release = threading.Event()

    @task(timeout_seconds=0.05, retries=1)
    def slow() -> None:
        release.wait(5)

    @flow
    def waiting() -> None:
        slow()

    state = waiting(return_state=True)
    release.set()
    names = types_of(runs, state.flow_run_id, "task-run.")
    assert names.count("task-run.Running") + names.count("task-run.Retrying") == 2 and names[-1] == "task-run.TimedOut"
    assert state.is_failed()


def test_cache_hits_expire_and_refresh(runs: EventStore) -> None:
    calls: list[int] = []

    @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
    def expensive(n: int) -> int:
        calls.append(n)
        return n * n

    @flow
    def twice(n: int) -> int:
        squared: int = expensive(n)
        return squared

    first = twice(4, return_state=True)
    second = twice(4, return_state=True)
    assert second.result() == 16 and calls == [4]
    assert list(current().results.root.iterdir()) == []  # the hit was loaded from the log itself
    cached = [payload(e, StateChanged) for e in run_events(runs, second.flow_run_id) if e.type == "task-run.Cached"]
    original = [
        payload(e, TaskRunCreated) for e in run_events(runs, first.flow_run_id) if e.type == "task-run.created"
    ]
    assert cached[0].cached_from == original[0].task_run_id
    twice(5)
    assert calls == [4, 5]

    refreshing = expensive.with_options(refresh_cache=True)

    @flow
    def refresh(n: int) -> int:
        squared: int = refreshing(n)
        return squared

    refresh(4)
    assert calls == [4, 5, 4]

    expiring = expensive.with_options(cache_expiration=timedelta(seconds=-1))

    @flow
    def expired(n: int) -> int:
        squared: int = expiring(n)
        return squared

    expired(6)
    expired(6)
    assert calls == [4, 5, 4, 6, 6]


def test_subflows_have_their_own_stream_and_a_parent_task_run(runs: EventStore) -> None:
    @flow
    def child(x: int) -> int:
        incremented: int = add(x, 1)
        return incremented

    @flow
    def parent() -> int:
        summed: int = child(1) + child(2)
        return summed

    state = parent(return_state=True)
    assert state.result() == 5
    parent_events = run_events(runs, state.flow_run_id)
    stand_ins = [payload(e, TaskRunCreated) for e in parent_events if e.type == "task-run.created"]
    assert [s.task_name for s in stand_ins] == ["child", "child"]
    for stand_in in stand_ins:
        child_events = run_events(runs, stand_in.child_flow_run_id)
        created = payload(child_events[0], FlowRunCreated)
        assert created.parent_task_run_id == stand_in.task_run_id
        assert created.parent_flow_run_id == str(state.flow_run_id)
        assert created.root_flow_run_id == str(state.flow_run_id)
        assert child_events[-1].type == "flow-run.Completed"
        assert child_events[0].meta.correlation_id == state.flow_run_id
    assert [e.type for e in parent_events].count("task-run.Completed") == 2


def test_async_tasks_run_concurrently(runs: EventStore) -> None:
    @task
    async def handshake(mine: asyncio.Event, theirs: asyncio.Event) -> str:
        mine.set()
        await asyncio.wait_for(theirs.wait(), 5)  # only finishes if the other runs at the same time
        return "ok"

    @flow
    async def together() -> list[str]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(handshake(a, b), handshake(b, a)))

    assert asyncio.run(together()) == ["ok", "ok"]


def test_logs_prints_and_context(runs: EventStore) -> None:
    seen: dict[str, Any] = {}

    @task(log_prints=True)
    def chatty() -> None:
        context = get_run_context()
        assert isinstance(context, TaskRunContext)
        seen["task"] = context.task_run.id
        get_run_logger().warning("careful")
        print("from a task")

    @flow(log_prints=True)
    def talker() -> None:
        seen["flow"] = get_run_context().flow_run.id
        get_run_logger().info("starting")
        print("from the flow")
        chatty()

    state = talker(return_state=True)
    assert seen["flow"] == state.flow_run_id
    logs = [payload(e, LogEmitted) for e in run_events(runs, state.flow_run_id) if e.type == "log.emitted"]
    assert [(log.message, log.level_name) for log in logs] == [
        ("starting", "INFO"), ("from the flow", "INFO"), ("careful", "WARNING"), ("from a task", "INFO"),
        ("Finished in state Completed", "INFO"),
    ]
    assert logs[0].task_run_id is None and logs[2].task_run_id == str(seen["task"])


def test_parameters_are_validated(runs: EventStore) -> None:
    @flow
    def typed(count: int, name: str = "x") -> int:
        return count

    assert typed("3") == 3  # coerced as pydantic does
    with pytest.raises(ParameterValidationError, match="count"):
        typed("three")
    with pytest.raises(ParameterValidationError):
        typed(1, 2, 3)


def test_hooks_see_the_final_state(runs: EventStore) -> None:
    seen: list[tuple[str, str]] = []

    @task(on_completion=[lambda t, r, s: seen.append((t.name, s.name))],
          on_failure=[lambda t, r, s: seen.append((t.name, s.name))])
    def judged(ok: bool) -> None:
        if not ok:
            raise ValueError("no")

    @flow
    def judge() -> None:
        judged(True)
        judged.submit(False).wait()

    judge()
    assert seen == [("judged", "Completed"), ("judged", "Failed")]


def test_run_names_from_templates(runs: EventStore) -> None:
    @task(task_run_name="add-{x}-{y}")
    def named(x: int, y: int) -> int:
        return x + y

    @flow(flow_run_name="nightly-{day}")
    def nightly(day: str) -> int:
        summed: int = named(1, 2)
        return summed

    state = nightly("mon", return_state=True)
    events = run_events(runs, state.flow_run_id)
    assert payload(events[0], FlowRunCreated).run_name == "nightly-mon"
    assert payload(events[2], TaskRunCreated).run_name == "add-1-2"


def test_tasks_outside_flows_are_plain_calls() -> None:
    assert add(2, 3) == 5
    with pytest.raises(RuntimeError, match="inside a flow"):
        add.submit(1, 2)


@task
def three(a: int, b: int = 2, c: int = 3) -> tuple[int, int, int]:
    return (a, b, c)


@flow
def binding() -> list[Any]:
    return [three(1), three(1, 5), three(1, c=7), three(b=4, a=0), three(*[9, 8, 7])]


def test_task_arguments_bind_like_a_python_call(runs: EventStore) -> None:
    assert binding() == [(1, 2, 3), (1, 5, 3), (1, 2, 7), (0, 4, 3), (9, 8, 7)]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 1}), ((1,), {"d": 1}), ((), {"b": 1, "d": 2})],
)
def test_task_calls_that_do_not_fit_the_signature_raise_type_error(
    runs: EventStore, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    @flow
    def calling() -> None:
        three(*args, **kwargs)

    with pytest.raises(TypeError):
        calling()


PAUSE_ATTEMPTS: list[int] = []


@task(retries=3)
def waits_for_approval() -> None:
    PAUSE_ATTEMPTS.append(1)
    raise Pause("needs a human")


@flow
def approval() -> None:
    PAUSE_ATTEMPTS.clear()
    state = waits_for_approval(return_state=True)
    assert state.is_paused() and state.message == "needs a human" and len(PAUSE_ATTEMPTS) == 1
    raise Pause("the flow waits too")


def test_pause_ends_a_run_paused_without_retries(runs: EventStore) -> None:
    state = approval(return_state=True)
    assert state.is_paused() and not state.is_failed()
    with pytest.raises(PausedRun, match="the flow waits too"):  # as Prefect: a paused run has no result yet
        state.result()
    events = [e.type for e in run_events(runs, state.flow_run_id) if e.type != "log.emitted"]
    assert events == [
        "flow-run.created", "flow-run.Running",
        "task-run.created", "task-run.Running", "task-run.Paused",
        "flow-run.Paused",
    ]


RELEASE = threading.Event()


@task
def blocks() -> str:
    RELEASE.wait(60)
    return "finished late"


@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def interrupted() -> None:
    for _ in range(4):
        blocks.submit()  # one runs, three wait for the single worker
    raise KeyboardInterrupt


def test_ctrl_c_crashes_the_flow_and_the_runs_it_never_started(runs: EventStore) -> None:
    RELEASE.clear()
    crashed: list[tuple[Any, str]] = []
    flow_ = interrupted.with_options(on_crashed=[lambda f, run, state: crashed.append((run.id, state.name))])
    with pytest.raises(KeyboardInterrupt):
        flow_()  # returns without waiting for the blocked run
    RELEASE.set()
    ((flow_run_id, state_name),) = crashed
    types = types_of(runs, flow_run_id)
    assert types[-1] == "flow-run.Crashed" and state_name == "Crashed"
    assert types.count("task-run.created") == 4 and types.count("task-run.Crashed") == 3
