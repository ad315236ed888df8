"""replay-flow-run, cancel-flow-run and run-deployment on both databases: what they append to the log."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from ledgerflow.events import EventStore
from ledgerflow.events.ids import derived_id
from ledgerflow.events.runs import read_flow_run
from ledgerflow.notifications.blocks import BlockStore
from tests.notifications.history import Runs
from tests.notifications.support import blocks_in, create_automation, dispatching, fire_by_hand, outcomes_of

REPLAY = """
name: replay-etl
trigger: {match: {events: [flow-run.Failed], flow_name: etl}}
actions: [{type: replay-flow-run, max_replays: 2}]
"""
RUN_DEPLOYMENT = """
name: backfill-on-failure
trigger: {match: {events: [flow-run.Failed], flow_name: etl}}
actions:
  - {type: run-deployment, deployment: backfill/nightly, parameters: {failed_run: "{{ flow_run.id }}", depth: 2}}
  - {type: run-deployment, deployment: backfill/missing}
"""
CANCEL = """
name: cancel-slow
trigger: {match: {events: [custom.too-slow]}}
actions: [{type: cancel-flow-run, message: "cancelled by {{ automation.name }}"}]
"""


@pytest.fixture
def blocks(store: EventStore, tmp_path: Path) -> BlockStore:
    return blocks_in(store, tmp_path)


def test_replay_requests_a_run_then_stops_at_max_replays(store: EventStore, blocks: BlockStore) -> None:
    from datetime import UTC, datetime

    runs = Runs(store, datetime.now(UTC))
    original, failed = runs.failed_run(0, "etl", entrypoint="flows/etl.py:etl", working_dir="/srv/app",
                                       parameters={"day": "2024-03-01"}, tags=["nightly"])
    automation = create_automation(store, REPLAY)
    chain = [original]
    with dispatching(store, blocks) as dispatcher:
        for _ in range(3):
            dispatcher.submit(fire_by_hand(store, automation, failed))
            assert dispatcher.wait_idle(30)
            outcome = outcomes_of(store, automation)[-1]
            if outcome.type == "action.failed":
                break
            replay = outcome.data["detail"]["replay_flow_run_id"]
            assert UUID(replay) == derived_id("replay-flow-run", automation.id, failed.id)
            history = read_flow_run(store, replay)
            assert [e.type for e in history.events] == ["flow-run.created", "flow-run.Scheduled"]
            created = history.created
            assert created["replay_of"] == chain[-1]
            assert (created["entrypoint"], created["working_dir"], created["parameters"], created["tags"]) == (
                "flows/etl.py:etl", "/srv/app", {"day": "2024-03-01"}, ["nightly"])
            chain.append(replay)
            runs.state(replay, "Running", 1)
            failed = runs.state(replay, "Failed", 2, "still broken")
    assert len(chain) == 3  # the original and two replays
    assert [o.type for o in outcomes_of(store, automation)] == ["action.succeeded", "action.succeeded", "action.failed"]
    assert outcomes_of(store, automation)[-1].data["error"] == (
        f"max_replays (2) reached: run {chain[-1]} is replay 2 of {original}")


def test_replay_refuses_a_run_without_entrypoint(store: EventStore, blocks: BlockStore) -> None:
    from datetime import UTC, datetime

    _, failed = Runs(store, datetime.now(UTC)).failed_run(0, "etl")
    automation = create_automation(store, REPLAY)
    with dispatching(store, blocks) as dispatcher:
        dispatcher.submit(fire_by_hand(store, automation, failed))
        assert dispatcher.wait_idle(30)
    [outcome] = outcomes_of(store, automation)
    assert outcome.type == "action.failed" and "records no entrypoint" in outcome.data["error"]


def test_cancel_a_running_run_and_refuse_a_finished_one(store: EventStore, blocks: BlockStore) -> None:
    from datetime import UTC, datetime

    from ledgerflow.events import NewEvent

    runs = Runs(store, datetime.now(UTC))
    running = runs.created(0, "slow")
    runs.state(running, "Running", 0)
    finished = runs.created(0, "slow")
    runs.state(finished, "Running", 0)
    runs.state(finished, "Completed", 1)
    automation = create_automation(store, CANCEL)
    signals = store.append("watchdog", [NewEvent(type="custom.too-slow", data={"flow_run_id": run}) for run in (running, finished)])
    with dispatching(store, blocks) as dispatcher:
        for signal in signals:
            dispatcher.submit(fire_by_hand(store, automation, signal))
        assert dispatcher.wait_idle(30)
    assert read_flow_run(store, running).events[-1].type == "flow-run.Cancelling"
    assert read_flow_run(store, running).events[-1].data["message"] == "cancelled by cancel-slow"
    assert read_flow_run(store, finished).events[-1].type == "flow-run.Completed"
    outcomes = {o.data["flow_run_id"]: o for o in outcomes_of(store, automation)}
    assert outcomes[running].type == "action.succeeded" and outcomes[running].data["detail"] == {"state": "Cancelling"}
    assert outcomes[finished].type == "action.failed" and "cannot become" in outcomes[finished].data["error"]


def test_run_deployment_requests_one_run_with_rendered_parameters(store: EventStore, blocks: BlockStore) -> None:
    from datetime import UTC, datetime

    from ledgerflow.events.deployments import DeploymentSpec, apply_deployment

    apply_deployment(store, DeploymentSpec(flow_name="backfill", name="nightly", entrypoint="flows/backfill.py:backfill",
                                           parameters={"depth": 1, "region": "eu"}))
    original, failed = Runs(store, datetime.now(UTC)).failed_run(0, "etl")
    automation = create_automation(store, RUN_DEPLOYMENT)
    with dispatching(store, blocks) as dispatcher:
        actions = fire_by_hand(store, automation, failed)
        dispatcher.submit(actions)
        dispatcher.submit(actions)  # a redelivery requests the same run, not a second one
        assert dispatcher.wait_idle(30)
    outcomes = [o for o in outcomes_of(store, automation)]
    succeeded = {o.data["detail"]["flow_run_id"] for o in outcomes if o.type == "action.succeeded"}
    assert len(succeeded) == 1
    [requested] = succeeded
    assert UUID(requested) == derived_id("run-deployment", actions[0].id)
    history = read_flow_run(store, requested)
    assert [e.type for e in history.events] == ["flow-run.created", "flow-run.Scheduled"]
    assert history.created["parameters"] == {"depth": 2, "region": "eu", "failed_run": original}
    assert history.created["entrypoint"] == "flows/backfill.py:backfill"
    refused = [o for o in outcomes if o.type == "action.failed"]
    assert refused and all("backfill/missing" in o.data["error"] for o in refused)


def test_a_replay_is_requested_where_its_run_ran(store: EventStore) -> None:
    """Workers of the run's pool and queue pick its replay up: both are kept, and so is the
    deployment; parameters change only where asked."""
    from ledgerflow.events.runs import replay_request, request_flow_run

    created = {"flow_name": "train", "entrypoint": "flows/train.py:train", "working_dir": "/srv", "tags": ["gpu"],
               "parameters": {"epochs": 3, "lr": 0.1}, "deployment_id": "d-1", "deployment_name": "train/nightly",
               "work_pool": "gpu", "work_queue": "urgent"}
    scheduled = request_flow_run(store, **replay_request(created, "run-1", parameters={"lr": 0.01},
                                                         replay_options={"from_task": None, "no_reuse": []}))
    replay = read_flow_run(store, str(scheduled.data["flow_run_id"])).created
    assert (replay["work_pool"], replay["work_queue"], replay["deployment_id"], replay["deployment_name"]) == (
        "gpu", "urgent", "d-1", "train/nightly")
    assert replay["replay_of"] == "run-1" and replay["parameters"] == {"epochs": 3, "lr": 0.01}
