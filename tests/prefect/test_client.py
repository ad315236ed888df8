"""Prefect's `get_client()` (docs: "Using prefect client methods"): sync and async, on the
embedded store (SQLite and PostgreSQL) and against a live server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledgerflow import Cancelled, Completed, flow, get_client, get_run_logger, task
from ledgerflow.api.http.app import create_app
from ledgerflow.client import (
    FlowRun,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunSort,
    LogFilter,
    LogFilterFlowRunId,
    ObjectNotFound,
    SetStateStatus,
)
from ledgerflow.events import EventStore
from ledgerflow.events.deployments import InvalidParameters, apply_deployment
from ledgerflow.runtime.deployments import build_spec
from ledgerflow.events.runs import request_flow_run
from ledgerflow.runtime.states import Scheduled
from ledgerflow.runtime import config
from tests.api.conftest import api_settings, serving, settings_for
from tests.prefect.conftest import wait_until

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT: dict[str, Any] = {"name": "nightly", "entrypoint": "tests/deployments/flows.py:double",
                              "working_dir": str(REPO), "parameters": {"n": 2}, "tags": ["etl"]}


@task
def add(x: int, y: int) -> int:
    get_run_logger().info("adding %d and %d", x, y)
    return x + y


@task
def explode() -> None:
    raise ValueError("boom")


@flow
def adder(x: int) -> int:
    total: int = add(x, 1)
    return total


@flow
def failing() -> None:
    explode()


def _seed() -> tuple[list[str], str]:
    done = [str(adder(i, return_state=True).flow_run_id) for i in range(3)]
    failed = str(failing(return_state=True).flow_run_id)
    return done, failed


def _scripted(done: list[str], failed: str, waiting: str) -> None:
    """What users script, against whatever get_client() talks to."""
    with get_client(sync_client=True) as client:
        completed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"]))),
            sort=FlowRunSort.END_TIME_DESC, limit=3,
        )
        assert sorted(str(r.id) for r in completed) == sorted(done)
        assert all(run.state is not None and run.state.is_completed() for run in completed)
        end_times = [run.end_time for run in completed]
        assert end_times == sorted((t for t in end_times if t is not None), reverse=True)

        by_name = client.read_flow_runs(flow_filter={"name": {"any_": ["failing", "adder"]}},
                                        flow_run_filter={"state": {"name": {"any_": ["Failed", "Completed"]}}})
        assert len(by_name) == 4
        assert [str(r.id) for r in client.read_flow_runs(flow_run_filter={"state": {"type": {"any_": ["FAILED"]}}})] == [failed]

        one = client.read_flow_run(done[0])
        assert one.flow_name == "adder" and one.parameters == {"x": 0} and one.run_count == 1
        with pytest.raises(ObjectNotFound):
            client.read_flow_run("00000000-0000-0000-0000-000000000000")

        tasks = client.read_task_runs(flow_run_filter={"id": {"any_": [failed]}})
        assert [(t.task_name, t.state_name) for t in tasks] == [("explode", "Failed")]
        failed_tasks = client.read_task_runs(task_run_filter={"state": {"type": {"any_": ["FAILED"]}}})
        assert [t.id for t in failed_tasks] == [t.id for t in tasks]
        assert client.read_task_run(tasks[0].id).error == "ValueError: boom"

        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[done[1]])))
        assert any(log.message == "adding 1 and 1" for log in logs)
        errors = client.read_logs(log_filter={"level": {"ge_": 40}})
        assert errors and all(log.level >= 40 for log in errors)
        assert {str(log.flow_run_id) for log in errors} == {failed}

        refused = client.set_flow_run_state(waiting, Completed())
        assert refused.status == SetStateStatus.REJECT and "only a running run can complete" in refused.details["reason"]
        forced = client.set_flow_run_state(waiting, Cancelled(), force=True)
        assert forced.status == SetStateStatus.ACCEPT and forced.state is not None and forced.state.is_cancelled()
        assert client.cancel_flow_run(done[0]).status == SetStateStatus.REJECT  # it already finished

        deployment = client.read_deployment_by_name("double/nightly")
        assert (deployment.name, deployment.flow_name, deployment.parameters) == ("nightly", "double", {"n": 2})
        assert client.read_deployment(deployment.id) == deployment
        with pytest.raises(ObjectNotFound):
            client.read_deployment_by_name("double/missing")
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"label": "y"})
        assert (run.deployment_id, run.parameters, run.state_name) == (str(deployment.id), {"n": 2, "label": "y"}, "Scheduled")
        assert run.tags == ["etl"]
        later = datetime.now(UTC) + timedelta(hours=1)
        planned = client.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=later))
        assert planned.expected_start_time == later
        with pytest.raises(InvalidParameters):
            client.create_flow_run_from_deployment(deployment.id, parameters={"unknown": 1})

    async def scripted_async() -> list[Any]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter={"state": {"type": {"any_": ["CANCELLED"]}}})
            return [str(run.id) for run in runs]

    async def deployment_run_async() -> dict[str, Any]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("double/nightly")
            run: FlowRun = await client.create_flow_run_from_deployment(deployment.id)
            return run.parameters

    wait_until(lambda: asyncio.run(scripted_async()) == [waiting])  # a server's projections follow the log
    assert asyncio.run(deployment_run_async()) == {"n": 2}


def test_the_client_on_the_embedded_store(runs: EventStore) -> None:
    done, failed = _seed()
    waiting = str(request_flow_run(runs, flow_name="adder", entrypoint="x.py:adder").data["flow_run_id"])
    apply_deployment(runs, build_spec(**DEPLOYMENT))
    _scripted(done, failed, waiting)


@pytest.fixture
def server_runtime(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A live server; this process's runs and get_client() talk to it."""
    with serving(create_app(settings_for(tmp_path, store_url), api_settings(run_projections=True))) as url:
        monkeypatch.setenv("LEDGERFLOW_API_URL", url)
        runtime = config.for_home(tmp_path / "client", store_url, api_url=url)
        previous = config.install(runtime)
        try:
            yield url
        finally:
            config.install(previous)
            runtime.close()


def test_the_client_against_a_server(server_runtime: str) -> None:
    done, failed = _seed()
    waiting = str(request_flow_run(config.current().log, flow_name="adder", entrypoint="x.py:adder").data["flow_run_id"])

    def projected() -> bool:
        with get_client(sync_client=True) as client:
            return len(client.read_flow_runs()) == 5 and not any(
                r.state_type is not None and r.state_type.value == "RUNNING" for r in client.read_flow_runs())

    wait_until(projected)
    httpx.post(f"{server_runtime}/api/deployments", json=DEPLOYMENT).raise_for_status()
    _scripted(done, failed, waiting)
