"""Reserved streams: a run's stream takes only events whose payload fits and whose state change
the rule book accepts, whether they come from the CLI, the API or the SDK; a refusal writes
nothing. The product's own writes (a flow run, in-process or through the server) still work."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import client, make_client  # noqa: F401 - the API fixtures

from ledgerflow.events import EventStore, NewEvent, StreamAppend, open_store
from ledgerflow.events.reserved import ReservedStreamViolation, RunStreamCache, check_appends
from ledgerflow.runtime.testing import harness
from ledgerflow.runtime.custom_events import InvalidCustomEvent, emit_event
from testdata.synthetic import SyntheticRun

CLOCK = datetime(2026, 1, 1, tzinfo=UTC)


def running_run(store: EventStore) -> SyntheticRun:
    """A flow run that is Running, with one task run that is Running."""
    run = SyntheticRun("etl", CLOCK)
    run.state("Running")
    task = run.task("extract")
    run.task_state(task, "Running")
    store.append_streams([StreamAppend(run.stream, run.events)])
    run.task_id = task  # type: ignore[attr-defined]
    return run


def state(run_id: str, name: str, kind: str = "COMPLETED", **more: object) -> dict[str, object]:
    return {"flow_run_id": run_id, "state_type": kind, "state_name": name, **more}


def refused(store: EventStore, stream: str, type_: str, data: dict[str, object], match: str) -> None:
    before = store.read_stream(stream)
    with pytest.raises(ReservedStreamViolation, match=match):
        check_appends(store, [StreamAppend(stream, [NewEvent(type=type_, data=data)])])
    assert store.read_stream(stream) == before


def test_run_streams_take_only_valid_payloads_and_legal_transitions(store: EventStore) -> None:
    run = running_run(store)
    task = run.task_id  # type: ignore[attr-defined]
    refused(store, run.stream, "flow-run.Completed", {"bogus": 1}, "flow_run_id: Field required")
    refused(store, run.stream, "flow-run.Completed", state(run.id, "Failed", "FAILED"), "must say Completed")
    refused(store, run.stream, "flow-run.Completed", state(str(uuid.uuid4()), "Completed"), "its own stream")
    refused(store, run.stream, "flow-run.Pending", state(run.id, "Pending", "PENDING"), "cannot go back to Pending")
    refused(store, run.stream, "flow-run.created", {"flow_run_id": run.id, "flow_name": "x", "run_name": "y"},
            "already exists")
    refused(store, run.stream, "order.placed", {}, "reserved for the product's own events")
    refused(store, "orders-1", "flow-run.Completed", state(run.id, "Completed"), "belong in the product's streams")
    refused(store, f"task-run-{task}", "order.placed", {}, "reserved")
    refused(store, run.stream, "task-run.Completed", state(run.id, "Completed"), "task_run_id: Field required")
    refused(store, run.stream, "task-run.Completed", state(run.id, "Completed", task_run_id=str(uuid.uuid4())),
            "a run starts Scheduled or Pending")

    # Legal moves pass, pinned to the version they were judged on.
    done = NewEvent(type="task-run.Completed", data=state(run.id, "Completed", task_run_id=task))
    [checked] = check_appends(store, [StreamAppend(run.stream, [done])])
    assert checked.expected_version == len(run.events)
    store.append_streams([checked])
    refused(store, run.stream, "task-run.Running", state(run.id, "Running", "RUNNING", task_run_id=task),
            "already Completed")
    # A retried append of events already stored is not judged again.
    assert check_appends(store, [StreamAppend(run.stream, [done])])[0].events == [done]


def test_a_reused_task_run_is_one_event_that_must_carry_a_valid_creation(store: EventStore) -> None:
    run = running_run(store)
    reuser = SyntheticRun("etl", CLOCK, run_id=run.id)
    reused_id = reuser.reused_task("load", "origin-task")
    reused = reuser.events[-1]
    refused(store, run.stream, "task-run.Reused", {**reused.data, "occurrence": "first"}, "occurrence")
    refused(store, run.stream, "task-run.Reused", {**reused.data, "task_run_id": run.task_id},  # type: ignore[attr-defined]
            "already exists")
    [checked] = check_appends(store, [StreamAppend(run.stream, [reused])])
    store.append_streams([checked])
    refused(store, run.stream, "task-run.Running", state(run.id, "Running", "RUNNING", task_run_id=reused_id),
            "already Reused")


def test_the_cache_reads_only_what_is_new_and_still_sees_retries(store: EventStore) -> None:
    run = running_run(store)
    cache = RunStreamCache()
    first = NewEvent(type="log.emitted", data={"flow_run_id": run.id, "level": 20, "level_name": "INFO",
                                                "logger": "x", "message": "hi"})
    done = NewEvent(type="flow-run.Completed", data=state(run.id, "Completed"))
    store.append_streams(check_appends(store, [StreamAppend(run.stream, [first, done])], cache=cache))
    # The cached state is as of before `done`: a retry of it is found in the stream, not refused.
    assert check_appends(store, [StreamAppend(run.stream, [done])], cache=cache)
    with pytest.raises(ReservedStreamViolation, match="already Completed"):
        again = NewEvent(type="flow-run.Completed", data=state(run.id, "Completed"))
        check_appends(store, [StreamAppend(run.stream, [again])], cache=cache)


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    return {**environ, "LEDGERFLOW_HOME": str(tmp_path / "home"), "LEDGERFLOW_DATABASE_URL": url,
            "NO_COLOR": "1", "COLUMNS": "200"}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_cli_events_append_refuses_a_fake_state_in_one_line(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    try:
        run = running_run(store)
    finally:
        store.close()
    env = env_for(tmp_path, store_url)
    bogus = cli(env, "events", "append", run.stream, "flow-run.Completed", '{"state_name": "Completed"}')
    assert bogus.returncode == 1 and "Traceback" not in bogus.stderr
    assert bogus.stderr.startswith("error: event 0 (flow-run.Completed): flow_run_id: Field required")
    assert "flow-run cancel" in bogus.stderr
    illegal = cli(env, "events", "append", run.stream, "flow-run.Pending",
                  f'{{"flow_run_id": "{run.id}", "state_type": "PENDING", "state_name": "Pending"}}')
    assert illegal.returncode == 1 and "Traceback" not in illegal.stderr
    assert "cannot go back to Pending" in illegal.stderr
    listed = cli(env, "flow-run", "inspect", run.id)
    assert listed.returncode == 0 and "Running" in listed.stdout and "Completed" not in listed.stdout
    legal = cli(env, "events", "append", run.stream, "flow-run.Completed",
                f'{{"flow_run_id": "{run.id}", "state_type": "COMPLETED", "state_name": "Completed"}}')
    assert legal.returncode == 0, legal.stderr
    ls = cli(env, "flow-run", "ls")
    assert "Completed" in ls.stdout and "Completed" in cli(env, "flow-run", "inspect", run.id).stdout
    store = open_store(store_url)
    try:
        assert [e.type for e in store.read_stream(run.stream)][-1] == "flow-run.Completed"
        assert len(store.read_stream(run.stream)) == len(run.events) + 1
    finally:
        store.close()


def test_api_refuses_fake_states_with_422_and_writes_nothing(client: TestClient) -> None:
    store: EventStore = client.app.state.ledgerflow.store  # type: ignore[attr-defined]
    run = running_run(store)
    for event in (
        {"type": "flow-run.Completed", "data": {"bogus": 1}},
        {"type": "flow-run.Pending", "data": state(run.id, "Pending", "PENDING")},
        {"type": "order.placed", "data": {}},
    ):
        reply = client.post("/api/events", json={"appends": [{"stream": run.stream, "events": [event]}]})
        assert reply.status_code == 422, reply.text
        assert "event 0" in reply.json()["detail"]
    # Every refused batch aimed at the run's stream (not head(): on PostgreSQL it may lag a fresh commit).
    assert [e.id for e in store.read_stream(run.stream)] == [e.id for e in run.events]
    legal = {"type": "flow-run.Completed", "data": state(run.id, "Completed")}
    reply = client.post("/api/events", json={"appends": [{"stream": run.stream, "events": [legal]}]})
    assert reply.status_code == 200, reply.text


def test_sdk_emit_event_cannot_reach_a_run_stream(store_url: str) -> None:
    with harness(store_url) as store:
        run = running_run(store)
        with pytest.raises(InvalidCustomEvent, match="reserved"):
            emit_event("flow-run.Completed", resource={"ledgerflow.resource.id": run.id})
        emitted = emit_event("order.placed", resource={"ledgerflow.resource.id": run.stream})
        assert emitted.stream != run.stream and emitted.stream.startswith("resource-")
        assert len(store.read_stream(run.stream)) == len(run.events)
