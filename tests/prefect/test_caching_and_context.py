"""Cache policies, tags() and the runtime context modules, as Prefect 3 has them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ledgerflow import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    flow,
    tags,
    task,
)
from ledgerflow.events import EventStore
from ledgerflow.events.runs import request_flow_run
from ledgerflow.runtime import deployment, execute_flow_run, flow_run, task_run
from tests.prefect.conftest import events_of, task_states
from tests.runtime.test_execute import REPO

executions: list[str] = []


def _executed(name: str) -> None:
    executions.append(name)


@task
def default_policy(x: int) -> int:
    _executed(f"default-{x}")
    return x


@task(cache_policy=INPUTS)
def by_inputs(x: int) -> tuple[int, int]:
    _executed(f"inputs-{x}")
    return (x, x * 2)


@task(cache_policy=INPUTS - "noise")
def ignoring_noise(x: int, noise: int) -> int:
    _executed(f"noise-{x}-{noise}")
    return x


@task(cache_policy=NO_CACHE)
def never_cached(x: int) -> int:
    _executed(f"never-{x}")
    return x


@task(cache_policy=FLOW_PARAMETERS + TASK_SOURCE)
def by_flow_parameters() -> str:
    _executed("flow-parameters")
    return "ok"


@task(cache_key_fn=lambda context, parameters: "fixed-key")
def keyed(x: int) -> int:
    _executed(f"keyed-{x}")
    return x


def test_the_default_policy_caches_a_repeated_call_within_one_run_only(log: EventStore) -> None:
    @flow
    def twice() -> list[int]:
        return [default_policy(1), default_policy(1), default_policy(2)]

    executions.clear()
    first = twice(return_state=True)
    second = twice(return_state=True)
    assert first.result() == second.result() == [1, 1, 2]
    assert executions == ["default-1", "default-2", "default-1", "default-2"]  # not across runs
    assert list(task_states(log, first.flow_run_id).values()) == ["Completed", "Cached", "Completed"]
    assert DEFAULT.run_scoped and not INPUTS.run_scoped and repr(DEFAULT) == "INPUTS + TaskSource + RunId"


def test_input_policies_cache_across_runs_and_keep_python_types(log: EventStore) -> None:
    @flow
    def uses_inputs(n: int) -> list[Any]:
        return [by_inputs(n), ignoring_noise(n, noise=n * 7), never_cached(n), never_cached(n)]

    executions.clear()
    assert uses_inputs(3) == [(3, 6), 3, 3, 3]
    again = uses_inputs(3, return_state=True)
    assert again.result() == [(3, 6), 3, 3, 3]
    assert isinstance(again.result()[0], tuple)  # a cached tuple comes back a tuple
    assert executions == ["inputs-3", "noise-3-21", "never-3", "never-3", "never-3", "never-3"]
    states = task_states(log, again.flow_run_id)
    assert states["by_inputs-0"] == "Cached" and states["ignoring_noise-0"] == "Cached"


@task(cache_policy=INPUTS)
def other_by_inputs(x: int) -> str:
    _executed(f"other-{x}")
    return "other"


def test_a_cache_key_is_scoped_by_its_task(log: EventStore) -> None:
    # Differs from Prefect on purpose: INPUTS alone would hand by_inputs' result to another task.
    @flow
    def two_tasks_same_inputs() -> list[Any]:
        return [by_inputs(11), other_by_inputs(11)]

    executions.clear()
    state = two_tasks_same_inputs(return_state=True)
    assert state.result() == [(11, 22), "other"]
    assert executions == ["inputs-11", "other-11"]
    assert task_states(log, state.flow_run_id) == {"by_inputs-0": "Completed", "other_by_inputs-0": "Completed"}


def test_flow_parameters_and_cache_key_fn(log: EventStore) -> None:
    @flow
    def parameterised(region: str) -> list[Any]:
        return [by_flow_parameters(), keyed(1), keyed(2)]

    executions.clear()
    parameterised("eu")
    parameterised("eu")
    parameterised("us")
    assert executions.count("flow-parameters") == 2  # eu once, us once
    assert executions.count("keyed-1") == 1 and "keyed-2" not in executions  # one fixed key


def test_tags_context_manager_tags_runs_created_inside(log: EventStore) -> None:
    @task(tags=["own"], cache_policy=NO_CACHE)  # called twice with the same (no) inputs
    def tagged() -> list[str]:
        return sorted(task_run.tags)

    @flow
    def outer() -> list[Any]:
        with tags("etl", "nightly"):
            inside = tagged()
        return [inside, tagged(), sorted(flow_run.tags)]

    with tags("team-a"):
        state = outer(return_state=True)
    assert state.result() == [["etl", "nightly", "own", "team-a"], ["own", "team-a"], ["team-a"]]
    created = events_of(log, state.flow_run_id, "flow-run.created")[0]
    assert created.data["tags"] == ["team-a"]


def test_runtime_modules_describe_the_current_runs(log: EventStore) -> None:
    @task
    def inspect_task(x: int) -> dict[str, Any]:
        return {"task_name": task_run.task_name, "parameters": task_run.parameters, "run_count": task_run.run_count}

    @flow
    def inspect_flow(a: int = 5) -> dict[str, Any]:
        return {"id": flow_run.id, "name": flow_run.name, "flow_name": flow_run.flow_name,
                "parameters": flow_run.parameters, "run_count": flow_run.run_count,
                "scheduled": flow_run.scheduled_start_time, "deployment": deployment.id,
                "task": inspect_task(a)}

    before = datetime.now(UTC)
    state = inspect_flow(return_state=True)
    seen = state.result()
    assert seen["id"] == str(state.flow_run_id) and seen["flow_name"] == "inspect-flow"
    assert seen["parameters"] == {"a": 5} and seen["run_count"] == 1 and seen["deployment"] is None
    assert before - timedelta(seconds=1) <= seen["scheduled"] <= datetime.now(UTC)
    assert seen["task"] == {"task_name": "inspect_task", "parameters": {"x": 5}, "run_count": 1}
    assert flow_run.id is None and task_run.parameters == {}  # outside any run


def test_a_requested_runs_scheduled_start_time_is_its_slot(log: EventStore) -> None:
    slot = datetime.now(UTC) + timedelta(milliseconds=300)
    scheduled = request_flow_run(log, flow_name="when", entrypoint="tests.prefect.context_flows:when",
                                 working_dir=str(REPO), scheduled_time=slot, deployment_id="dep-1")
    state = execute_flow_run(scheduled.data["flow_run_id"])
    assert state.result() == [slot.isoformat(), "dep-1"]
    assert RUN_ID.run_scoped
