"""Task signatures, run names, hooks and the thread pool, as Prefect 3 has them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ledgerflow import ReservedArgumentError, ThreadPoolTaskRunner, flow, get_run_logger, task
from ledgerflow.events import EventStore
from tests.prefect.conftest import events_of


def test_tasks_with_star_args_and_kwargs_bind_run_map_and_cache(log: EventStore) -> None:
    calls: list[Any] = []

    @task
    def gather(first: int, *rest: int, scale: int = 1, **extra: str) -> int:
        calls.append((first, rest, scale, extra))
        return (first + sum(rest)) * scale

    @flow
    def variadic() -> list[int]:
        direct = gather(1, 2, 3, scale=2, note="x")
        again = gather(1, 2, 3, scale=2, note="x")  # same inputs: Cached by the default policy
        mapped = gather.map([10, 20], scale=3).result()
        return [direct, again, *mapped]

    state = variadic(return_state=True)
    assert state.result() == [12, 12, 30, 60]
    assert calls[0] == (1, (2, 3), 2, {"note": "x"}) and len(calls) == 3
    names = [e.type for e in events_of(log, state.flow_run_id, "task-run.") if e.type != "task-run.created"]
    assert names.count("task-run.Cached") == 1


def test_run_name_callables_get_the_parameters_when_they_ask() -> None:
    from ledgerflow.runtime.testing import harness

    @task(task_run_name=lambda parameters: f"load-{parameters['region']}")
    def load(region: str) -> str:
        from ledgerflow.runtime import task_run

        return str(task_run.name)

    @flow(flow_run_name=lambda: "nightly")
    def named() -> str:
        from ledgerflow.runtime import flow_run

        return f"{flow_run.name}/{load('eu')}"

    with harness():
        assert named() == "nightly/load-eu"


def test_wait_for_is_reserved() -> None:
    with pytest.raises(ReservedArgumentError, match="'wait_for' is a reserved argument name"):
        @task
        def bad(wait_for: list[int]) -> None: ...


def test_hooks_of_every_kind_on_tasks_and_flows_async_ones_awaited(log: EventStore) -> None:
    seen: list[str] = []

    def sync_hook(label: str) -> Any:
        def hook(obj: Any, run: Any, state: Any) -> None:
            seen.append(f"{label}:{state.name}")
        return hook

    def async_hook(label: str) -> Any:
        async def hook(obj: Any, run: Any, state: Any) -> None:
            await asyncio.sleep(0)
            seen.append(f"{label}:{state.name}")
        return hook

    @task(on_running=[sync_hook("task running")], on_completion=[async_hook("task done")],
          on_failure=[async_hook("task failed")])
    def maybe(fail: bool) -> int:
        if fail:
            raise ValueError("no")
        return 1

    @flow(on_running=[async_hook("flow running")], on_completion=[sync_hook("flow done")],
          on_failure=[sync_hook("flow failed")])
    def hooked(fail: bool) -> int:
        total: int = maybe(False) + maybe(fail)
        return total

    hooked(False)
    assert seen == ["flow running:Running", "task running:Running", "task done:Completed",
                    "task done:Cached", "flow done:Completed"]
    seen.clear()
    with pytest.raises(ValueError):
        hooked(True)
    assert "task failed:Failed" in seen and seen[-1] == "flow failed:Failed"

    async def in_async_flow() -> None:
        @flow(on_completion=[async_hook("async flow done")])
        async def asynchronous() -> int:
            return 1

        await asynchronous()

    seen.clear()
    asyncio.run(in_async_flow())
    assert seen == ["async flow done:Completed"]


def test_hooks_are_checked_where_they_are_declared() -> None:
    with pytest.raises(TypeError, match="Expected iterable for 'on_completion'"):
        @task(on_completion=print)
        def one() -> None: ...
    with pytest.raises(TypeError, match="Expected callables in 'on_failure'"):
        @flow(on_failure=["not a hook"])
        def two() -> None: ...


def test_the_thread_pool_runs_every_submitted_task_at_once_by_default(log: EventStore) -> None:
    barrier = threading.Barrier(30, timeout=30)

    @task
    def meet(i: int) -> int:
        barrier.wait()  # only returns when all 30 run at the same time
        return 1

    @flow(task_runner=ThreadPoolTaskRunner())
    def crowd() -> int:
        return sum(meet.map(range(30)).result())

    assert crowd() == 30


def test_logs_and_loggers_for_a_given_run(log: EventStore) -> None:
    from ledgerflow import flow_run_logger, task_run_logger

    @task
    def work() -> None:
        get_run_logger().info("inside")

    def on_done(flow_: Any, run: Any, state: Any) -> None:
        flow_run_logger(run).warning("hook says %s", state.name)

    @flow(on_completion=[on_done])
    def logged() -> None:
        work()

    state = logged(return_state=True)
    messages = [e.data["message"] for e in events_of(log, state.flow_run_id, "log.emitted")]
    assert "inside" in messages and "hook says Completed" in messages
    assert callable(task_run_logger)
