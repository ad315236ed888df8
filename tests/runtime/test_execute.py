"""Adopting requested runs: a `flow-run.Scheduled` run executed by whoever claims it first."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.events import EventStore, StoredEvent
from ledgerflow.events.cursor import Cursor
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import (
    RunClaim,
    RunNotFound,
    RunStateConflict,
    cancel_flow_run,
    propose_flow_run_state,
    read_flow_run,
    request_flow_run,
)
from ledgerflow.runtime import RunAlreadyClaimed, RunNotAdoptable, config, execute_flow_run
from ledgerflow.runtime.execute import claim_due_runs
from ledgerflow.runtime.entrypoints import EntrypointError, entrypoint_of, load_entrypoint
from tests.runtime import sample_flows
from tests.runtime.conftest import run_events

REPO = Path(__file__).resolve().parents[2]


def request(store: EventStore, entrypoint: str, working_dir: Path | str = REPO, **kwargs: object) -> str:
    scheduled = request_flow_run(
        store, flow_name=entrypoint.rpartition(":")[2], entrypoint=entrypoint, working_dir=str(working_dir), **kwargs,
    )
    return str(scheduled.data["flow_run_id"])


def test_a_requested_run_is_executed_in_its_own_stream_with_its_parameters(runs: EventStore) -> None:
    run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 40, "b": 2})
    state = execute_flow_run(run_id)
    assert state.is_completed() and state.result() == 42
    types = [e.type for e in run_events(runs, run_id)]
    assert types == ["flow-run.created", "flow-run.Scheduled", "flow-run.Pending", "flow-run.Running", "log.emitted",
                     "flow-run.Completed"]
    assert str(state.flow_run_id) == run_id


def test_a_file_entrypoint_relative_to_the_working_directory_loads_from_elsewhere(
    runs: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "helpers.py").write_text("FACTOR = 3\n")
    (project / "flows" / "etl.py").write_text(
        "import sys\n"
        "sys.path.insert(0, str(__import__('pathlib').Path(__file__).parents[1]))\n"
        "from helpers import FACTOR\n"
        "from ledgerflow import flow\n"
        "@flow\n"
        "def etl(n: int) -> int:\n"
        "    return n * FACTOR\n"
    )
    monkeypatch.chdir(tmp_path)  # somewhere else than the project
    run_id = request(runs, "flows/etl.py:etl", working_dir=project, parameters={"n": 5})
    assert execute_flow_run(run_id).result() == 15


def test_a_run_scheduled_for_later_waits_for_its_time(runs: EventStore) -> None:
    due = utcnow() + timedelta(seconds=1)
    run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1}, scheduled_time=due)
    with pytest.raises(RunNotAdoptable, match="scheduled for"):
        execute_flow_run(run_id, wait=False)
    assert execute_flow_run(run_id).is_completed()
    running = next(e for e in run_events(runs, run_id) if e.type == "flow-run.Running")
    assert running.recorded >= due


def test_a_run_that_waited_for_its_time_is_claimed_on_what_was_read_before_the_wait(
    runs: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hundred runs due at once each claim at that moment: reading each run again then (one
    # more request each, through a server) would delay them all; the versioned claim catches
    # any change made during the wait.
    due = utcnow() + timedelta(seconds=0.5)
    run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1}, scheduled_time=due)
    stream = f"flow-run-{run_id}"
    log = config.current().log
    reads_before_claim = 0
    read_stream = log.read_stream

    def counting(name: str, *args: Any, **kwargs: Any) -> list[StoredEvent]:
        nonlocal reads_before_claim
        events = read_stream(name, *args, **kwargs)
        if name == stream and not any(e.type == "flow-run.Pending" for e in events):
            reads_before_claim += 1
        return events

    monkeypatch.setattr(log, "read_stream", counting)
    assert execute_flow_run(run_id).is_completed()
    assert reads_before_claim == 1


def test_a_batch_claim_writes_nothing_when_one_of_its_runs_moved_since_it_was_read(runs: EventStore) -> None:
    first, second = (request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1}) for _ in range(2))
    claims = [RunClaim.of(read_flow_run(runs, run_id), f"host:{n}", None) for n, run_id in enumerate((first, second))]
    propose_flow_run_state(runs, second, "Pending", actor="another executor")
    assert claim_due_runs(runs, claims) == {}  # each executor claims its run itself
    assert read_flow_run(runs, first).state.name == "Scheduled"  # type: ignore[union-attr]
    third = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1})
    claims = [claims[0], RunClaim.of(read_flow_run(runs, third), "host:2", None)]
    assert {run: event.stream_position for run, event in claim_due_runs(runs, claims).items()} == {first: 3, third: 3}
    pending = read_flow_run(runs, first).events[-1]
    assert pending.type == "flow-run.Pending" and pending.data["executor"] == "host:0"


def test_an_adopted_run_watches_for_cancels_from_its_claim_on_without_asking_for_the_log_head(
    runs: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a server the head is a request: a hundred runs due at once would make a hundred.
    run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1})
    runtime = config.current()
    assert runtime.watcher.cursor is None  # the process's first run

    def no_head() -> str:
        raise AssertionError("the log's head was asked for")

    monkeypatch.setattr(runtime.log, "head", no_head)
    assert execute_flow_run(run_id).is_completed()
    pending = next(e for e in run_events(runs, run_id) if e.type == "flow-run.Pending")
    assert runtime.watcher.cursor is not None and Cursor.parse(runtime.watcher.cursor) >= Cursor.parse(pending.cursor)


def test_two_executors_racing_for_one_run_run_it_once(runs: EventStore) -> None:
    for _ in range(5):
        # Both wait for the scheduled time, then claim at once.
        due = utcnow() + timedelta(seconds=0.3)
        run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1}, scheduled_time=due)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def execute() -> None:
            barrier.wait()
            try:
                outcomes.append(execute_flow_run(run_id).name)
            except RunAlreadyClaimed:
                outcomes.append("lost")

        threads = [threading.Thread(target=execute) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["Completed", "lost"]
        types = [e.type for e in run_events(runs, run_id)]
        assert types.count("flow-run.Pending") == 1 and types.count("flow-run.Running") == 1


def test_a_claim_decided_on_a_stale_read_is_decided_again_on_what_the_log_has(runs: EventStore) -> None:
    # An executor decides its claim on the run as it first read it (no second read): its
    # versioned append must still lose to a claim written in between.
    run_id = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1})
    stale = read_flow_run(runs, run_id)
    propose_flow_run_state(runs, run_id, "Pending", actor="first")
    with pytest.raises(RunStateConflict):
        propose_flow_run_state(runs, run_id, "Pending", actor="second", known=stale)
    assert [e.type for e in run_events(runs, run_id)].count("flow-run.Pending") == 1


def test_what_cannot_be_executed_is_refused_clearly(runs: EventStore) -> None:
    with pytest.raises(RunNotFound):
        execute_flow_run("01a2b3c4-0000-7000-8000-000000000000")
    finished = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1})
    execute_flow_run(finished)
    with pytest.raises(RunNotAdoptable, match="is Completed, not Scheduled"):
        execute_flow_run(finished)
    cancelled = request(runs, "tests.runtime.sample_flows:add", parameters={"a": 1})
    cancel_flow_run(runs, cancelled)
    with pytest.raises(RunNotAdoptable, match="Cancelled"):
        execute_flow_run(cancelled)
    # The claim succeeds but the flow cannot be loaded: the run fails, saying why.
    gone = request(runs, "tests.runtime.no_such_module:etl", parameters={})
    with pytest.raises(RunNotAdoptable, match="cannot import module"):
        execute_flow_run(gone)
    history = read_flow_run(runs, gone)
    assert history.state is not None and history.state.name == "Failed"
    assert "no_such_module" in history.events[-1].data["message"]
    wrong = request(runs, "tests.runtime.sample_flows:add", parameters={"a": "not a number"})
    with pytest.raises(RunNotAdoptable, match="invalid parameters"):
        execute_flow_run(wrong)


def test_entrypoints_round_trip() -> None:
    located = entrypoint_of(sample_flows.add.fn)
    assert located is not None and located.entrypoint == "tests.runtime.sample_flows:add"
    assert load_entrypoint(located.entrypoint, located.working_dir) is sample_flows.add
    with pytest.raises(EntrypointError, match="has no 'nope'"):
        load_entrypoint("tests.runtime.sample_flows:nope")
    with pytest.raises(EntrypointError, match="does not exist"):
        load_entrypoint("missing/file.py:etl", "/nowhere")
    with pytest.raises(EntrypointError, match="must look like"):
        load_entrypoint("no-colon")


def test_a_script_run_records_a_path_that_another_process_can_load(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(
        "from ledgerflow import flow\n"
        "@flow\n"
        "def job(x: int = 2) -> int:\n"
        "    return x * 10\n"
        "if __name__ == '__main__':\n"
        "    job()\n"
    )
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path / "home")}
    for name in ("LEDGERFLOW_DATABASE_URL", "LEDGERFLOW_API_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, "job.py"], cwd=project, env=env, check=True, capture_output=True, timeout=120)
    check = (
        "from ledgerflow.events import open_store\n"
        "from ledgerflow.runtime.entrypoints import load_entrypoint\n"
        f"store = open_store('sqlite:///{tmp_path / 'home' / 'ledgerflow.db'}')\n"
        "(created,) = store.read_all(types=['flow-run.created'])\n"
        "print(created.data['entrypoint'])\n"
        "print(load_entrypoint(created.data['entrypoint'], created.data['working_dir']).fn(x=4))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["job.py:job", "40"]


def test_a_scheduled_event_alone_can_request_a_run(runs: EventStore) -> None:
    """An API client may append only `flow-run.Scheduled`, naming what to run in it."""
    from uuid import uuid4

    from ledgerflow.events import NO_STREAM, NewEvent

    run_id = str(uuid4())
    runs.append(f"flow-run-{run_id}", [NewEvent(type="flow-run.Scheduled", data={
        "flow_run_id": run_id, "state_type": "SCHEDULED", "state_name": "Scheduled",
        "entrypoint": "tests.runtime.sample_flows:add", "working_dir": str(REPO), "parameters": {"a": 7},
    })], NO_STREAM)
    assert execute_flow_run(run_id).result() == 8
    events = run_events(runs, run_id)
    created = next(e for e in events if e.type == "flow-run.created")
    assert created.data["flow_name"] == "add" and created.data["entrypoint"] == "tests.runtime.sample_flows:add"
    assert [e.type for e in events][-1] == "flow-run.Completed"
