"""A deployment's concurrency limit holds (extra runs wait, then start in order); `Late`;
`serve` schedules and executes its own runs; `ledgerflow deploy` applies ledgerflow.yaml."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ledgerflow.events import EventStore
from ledgerflow.events.deployments import apply_deployment, request_deployment_run, spec_from
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import mark_late, read_flow_run
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.runtime import RunNotAdoptable, execute_flow_run
from ledgerflow.runtime.execute import RunAwaitsConcurrency
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from ledgerflow.runtime.testing import harness
from tests.api.conftest import wait_until
from tests.integration.test_cli_control import LEDGERFLOW, cli_env

REPO = Path(__file__).resolve().parents[2]
FLOWS = "tests/deployments/flows.py"


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


def deploy(store: EventStore, name: str, flow: str, **values: object) -> None:
    apply_deployment(store, spec_from({"flow_name": flow, "name": name, "entrypoint": f"{FLOWS}:{flow}",
                                       "working_dir": str(REPO), **values}))


def state_name(store: EventStore, run_id: str) -> str | None:
    state = read_flow_run(store, run_id).state
    return state.name if state else None


def test_extra_runs_wait_for_a_slot_then_start_in_order(store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "spans"
    folder.mkdir()
    with harness(store_url) as store:
        deploy(store, "one-at-a-time", "slow", concurrency_limit=1, parameters={"folder": str(folder)})
        start = utcnow() - timedelta(seconds=10)
        ids = [str(request_deployment_run(store, "slow/one-at-a-time", scheduled_time=start + timedelta(seconds=i))
                   .data["flow_run_id"]) for i in range(3)]
        rm = ReadModel(store)
        assert queries.due_flow_runs(rm, pools=("default",)) == ids[:1]  # one slot: the earliest run only
        launcher = RunLauncher(lambda n: queries.due_flow_runs(rm, pools=("default",), limit=n),
                               ChildSettings(str(tmp_path / "home"), store_url), concurrency=4, interval=0.05)
        launcher.start()
        try:
            wait_until(lambda: all(state_name(store, run_id) == "Completed" for run_id in ids), timeout=120)
        finally:
            launcher.stop()
        spans = sorted(tuple(map(float, f.read_text().split())) for f in folder.iterdir())
        assert len(spans) == 3
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:], strict=False))
        started = [next(e.recorded for e in read_flow_run(store, run_id).events if e.type == "flow-run.Running")
                   for run_id in ids]
        assert started == sorted(started)


def test_a_run_over_the_limit_is_not_claimed(runs: EventStore, tmp_path: Path) -> None:
    deploy(runs, "limited", "slow", concurrency_limit=1, parameters={"folder": str(tmp_path), "seconds": 0})
    first, second = (str(request_deployment_run(runs, "slow/limited").data["flow_run_id"]) for _ in range(2))
    from ledgerflow.events.deployments import acquire_concurrency_slot

    assert acquire_concurrency_slot(runs, str(read_flow_run(runs, first).created["deployment_id"]), first, 1,
                                    lambda holder: True)
    with pytest.raises(RunAwaitsConcurrency):
        execute_flow_run(second, wait=False)
    assert state_name(runs, second) == "Scheduled"
    assert execute_flow_run(first).is_completed()  # it holds the slot already
    assert execute_flow_run(second).is_completed()  # the holder finished: the slot is free


def test_a_scheduled_run_not_started_in_time_becomes_late_and_can_still_run(runs: EventStore) -> None:
    deploy(runs, "late", "double", parameters={"n": 2})
    run_id = str(request_deployment_run(runs, "double/late", scheduled_time=utcnow() - timedelta(minutes=5))
                 .data["flow_run_id"])
    late = mark_late(runs, run_id)
    assert late is not None and late.type == "flow-run.Late" and late.data["scheduled_time"]
    assert mark_late(runs, run_id) is None  # once
    rm = ReadModel(runs)
    assert run_id in queries.due_flow_runs(rm, pools=("default",))
    assert execute_flow_run(run_id).result() == 4
    assert mark_late(runs, run_id) is None
    with pytest.raises(RunNotAdoptable):
        execute_flow_run(run_id)


def test_serve_schedules_and_executes_its_own_runs(store_url: str, tmp_path: Path) -> None:
    from ledgerflow.events import load_settings
    from ledgerflow.runtime.serving import Served
    from tests.deployments.flows import double

    settings = load_settings({"LEDGERFLOW_HOME": str(tmp_path / "home"), "LEDGERFLOW_DATABASE_URL": store_url,
                              "LEDGERFLOW_SCHEDULER_HORIZON_SECONDS": "2", "LEDGERFLOW_SCHEDULER_INTERVAL_SECONDS": "0.2"})
    with harness(store_url) as store:
        served = Served([double.to_deployment("served", interval=0.5, parameters={"n": 5}, work_pool_name="serve")],
                        settings=settings)
        served.start()
        try:
            def completed() -> int:
                ran = [e.data["flow_run_id"] for e in store.read_all(limit=10_000, types=["flow-run.created"])]
                return sum(state_name(store, str(r)) == "Completed" for r in ran)

            wait_until(lambda: completed() >= 3, timeout=120)
        finally:
            served.stop()


LEDGERFLOW_YAML = """
deployments:
  - name: nightly
    entrypoint: tests/deployments/flows.py:double
    parameters: {n: 100}
    schedules:
      - cron: "0 6 * * *"
        timezone: Europe/Paris
      - interval: 300
        parameters: {n: 1}
    tags: [etl]
    concurrency_limit: 1
  - name: weekly
    entrypoint: tests/deployments/flows.py:double
    work_pool: {name: default, work_queue_name: slow}
    parameters: {n: 7}
    rrule: "FREQ=WEEKLY;BYDAY=MO,WE"
"""


def test_ledgerflow_deploy_is_idempotent_and_a_changed_file_updates(tmp_path: Path, store_url: str) -> None:
    (tmp_path / "ledgerflow.yaml").write_text(LEDGERFLOW_YAML.replace("tests/", f"{REPO}/tests/"))
    env = cli_env(tmp_path, store_url)

    def deploy_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LEDGERFLOW, "deploy", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    refused = deploy_cli()
    assert refused.returncode == 1 and "--all" in refused.stderr
    first = deploy_cli("--all")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == 2
    second = deploy_cli("--all")
    assert second.stdout.count("unchanged") == 2, second.stdout
    (tmp_path / "ledgerflow.yaml").write_text(
        LEDGERFLOW_YAML.replace("tests/", f"{REPO}/tests/").replace("interval: 300", "interval: 600"))
    third = deploy_cli("nightly")
    assert "updated" in third.stdout and third.stdout.count("deployment") == 1
    listed = subprocess.run([LEDGERFLOW, "deployment", "ls", "--json"], env=env, capture_output=True, text=True)
    import orjson

    shown = {d["name"]: d for d in orjson.loads(listed.stdout)}
    assert shown["double/nightly"]["schedules"][1]["schedule"]["interval"] == 600
    assert shown["double/weekly"]["work_queue"] == "slow"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"- name: broken\n  entrypoint: {REPO}/tests/deployments/flows.py:double\n  parameters: {{m: 1}}\n")
    failed = deploy_cli("--file", str(bad))
    assert failed.returncode == 1 and "takes no parameter 'm'" in failed.stderr
