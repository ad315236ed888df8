"""Replay from failure: only what did not succeed runs again (asserted on side effects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledgerflow import ReplayError, replay
from ledgerflow.events import EventStore
from ledgerflow.events.payloads import creates_task_run
from ledgerflow.events.runs import read_flow_run, request_flow_run
from ledgerflow.runtime import config, execute_flow_run
from ledgerflow.runtime.replays import ReplayOptions, plan_replay
from ledgerflow.runtime.states import State
from tests.runtime import replay_flows
from tests.runtime.conftest import run_events
from tests.runtime.test_execute import REPO


def run_of(store: EventStore, entrypoint: str, **parameters: Any) -> tuple[str, State]:
    """Run a flow the way a deployment would (requested, then executed): its id and state."""
    scheduled = request_flow_run(store, flow_name=entrypoint.rpartition(":")[2], entrypoint=entrypoint,
                                 working_dir=str(REPO), parameters=parameters)
    run_id = str(scheduled.data["flow_run_id"])
    return run_id, execute_flow_run(run_id)


def task_states(store: EventStore, run_id: str) -> dict[str, str]:
    """run name -> final state name of each task run of a flow run."""
    names: dict[str, str] = {}
    final: dict[str, str] = {}
    for event in run_events(store, run_id):
        if creates_task_run(event.type, event.data):
            names[event.data["task_run_id"]] = event.data["run_name"]
        if event.type != "task-run.created" and event.type.startswith("task-run."):
            final[event.data["task_run_id"]] = event.type.partition(".")[2]
    return {names[k]: v for k, v in final.items()}


def test_a_flow_failing_at_task_7_replays_tasks_7_to_10_only(runs: EventStore, tmp_path: Path) -> None:
    (tmp_path / "fail-7").write_text("")
    original, state = run_of(runs, "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
    assert state.is_failed()
    assert replay_flows.executed(tmp_path) == [f"step-{n}" for n in range(1, 8)]

    (tmp_path / "fail-7").unlink()
    (tmp_path / "executed").unlink()
    replayed = replay(original)
    assert isinstance(replayed, State) and replayed.is_completed()
    assert replayed.result() == sum(range(1, 11))
    assert replay_flows.executed(tmp_path) == [f"step-{n}" for n in range(7, 11)]
    new_id = str(replayed.flow_run_id)
    states = task_states(runs, new_id)
    # Task run names count calls from 0: step-0 is the call of step 1.
    assert [states[f"step-{n - 1}"] for n in range(1, 7)] == ["Reused"] * 6
    assert [states[f"step-{n - 1}"] for n in range(7, 11)] == ["Completed"] * 4
    history = read_flow_run(runs, new_id)
    assert history.created["replay_of"] == original
    # Each reused task run names the task run that produced its value in the original.
    originals = {e.data["run_name"]: e.data["task_run_id"] for e in run_events(runs, original) if e.type == "task-run.created"}
    reused = [e for e in history.events if e.type == "task-run.Reused"]
    assert len(reused) == 6
    assert all(e.data["cached_from"] == originals[e.data["run_name"]] for e in reused)
    # A reused task run is that one event: it carries its creation, and nothing else is written of it.
    assert all(creates_task_run(e.type, e.data) for e in reused)
    assert not {e.data["task_run_id"] for e in reused} & {e.data.get("task_run_id") for e in history.events if e not in reused}
    # The original is untouched.
    assert read_flow_run(runs, original).state.name == "Failed"  # type: ignore[union-attr]


def test_a_changed_parameter_reruns_only_the_tasks_it_reaches(runs: EventStore, tmp_path: Path) -> None:
    (tmp_path / "fail-summarise").write_text("")
    original, state = run_of(runs, "tests.runtime.replay_flows:branching", folder=str(tmp_path),
                             regions=["eu", "us", "apac"], mode="short")
    assert state.is_failed()
    (tmp_path / "fail-summarise").unlink()
    (tmp_path / "executed").unlink()

    replayed = replay(original, parameters={"mode": "long"})
    assert isinstance(replayed, State) and replayed.result() == {"mode": "long", "total": 24}
    # The loads match (same inputs) and are reused; the new branch and the summary run.
    assert replay_flows.executed(tmp_path) == ["detail", "summarise-long"]

    (tmp_path / "executed").unlink()
    again = replay(str(replayed.flow_run_id), parameters={"regions": ["eu", "us"]})
    assert isinstance(again, State) and again.is_completed()
    # A replay of a replay: the loads of eu and us still match their original results.
    assert replay_flows.executed(tmp_path) == ["detail", "summarise-long"]
    assert again.result() == {"mode": "long", "total": 12}


def test_a_completed_subflow_is_reused_whole_and_a_failed_one_replayed_inside(runs: EventStore, tmp_path: Path) -> None:
    (tmp_path / "fail-102").write_text("")
    original, state = run_of(runs, "tests.runtime.replay_flows:with_subflows", folder=str(tmp_path))
    assert state.is_failed()
    assert replay_flows.executed(tmp_path) == ["step-101", "step-102"]
    (tmp_path / "fail-102").unlink()
    (tmp_path / "executed").unlink()

    replayed = replay(original)
    assert isinstance(replayed, State) and replayed.result() == (1 + 101) + (2 + 102) + 200
    assert replay_flows.executed(tmp_path) == ["step-102", "step-200"]
    events = run_events(runs, str(replayed.flow_run_id))
    stand_ins = [e for e in events if creates_task_run(e.type, e.data) and e.data["task_name"] == "inner"]
    assert len(stand_ins) == 2
    assert "child_flow_run_id" not in stand_ins[0].data  # reused whole: no child run at all
    child = stand_ins[1].data["child_flow_run_id"]
    child_history = read_flow_run(runs, child)
    assert child_history.created["replay_of"] is not None  # the failed subflow, replayed inside


def test_options_from_task_and_no_reuse(runs: EventStore, tmp_path: Path) -> None:
    (tmp_path / "fail-9").write_text("")
    original, _ = run_of(runs, "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
    (tmp_path / "fail-9").unlink()

    (tmp_path / "executed").unlink()
    assert isinstance(replay(original, from_task="step"), State)
    assert replay_flows.executed(tmp_path) == [f"step-{n}" for n in range(1, 11)]  # step is the first task

    preview = plan_replay(config.current().log, original, ReplayOptions(no_reuse=("step",))).preview()
    assert [v.reuse for v in preview] == [False] * 9 and preview[0].reason == "--no-reuse"
    plain = plan_replay(config.current().log, original).preview()
    assert [v.reuse for v in plain] == [True] * 8 + [False]
    assert plain[-1].reason == "it ended Failed"


def test_a_missing_result_file_makes_the_task_run_again(runs: EventStore, tmp_path: Path) -> None:
    (tmp_path / "fail-3").write_text("")
    original, _ = run_of(runs, "tests.runtime.replay_flows:big_results", folder=str(tmp_path))
    files = sorted(config.current().results.root.iterdir())
    assert len(files) == 2  # the two big results
    files[0].unlink()
    (tmp_path / "fail-3").unlink()
    (tmp_path / "executed").unlink()

    replayed = replay(original)
    assert isinstance(replayed, State) and replayed.result() == 2 * 2002 + 3
    lost = {"big-1", "big-2"} & set(replay_flows.executed(tmp_path))
    assert len(lost) == 1 and replay_flows.executed(tmp_path)[-1] == "step-3"  # the other big result was reused
    warnings = [e.data["message"] for e in run_events(runs, str(replayed.flow_run_id))
                if e.type == "log.emitted" and e.data["level_name"] == "WARNING"]
    assert any("Cannot reuse the result" in w and "running it again" in w for w in warnings)


def test_replays_are_refused_clearly(runs: EventStore, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no run with id"):
        replay("01a2b3c4-0000-7000-8000-000000000000")
    pending = request_flow_run(runs, flow_name="add", entrypoint="tests.runtime.sample_flows:add",
                               working_dir=str(REPO), parameters={"a": 1})
    with pytest.raises(ReplayError, match="is Scheduled: replay it once it has finished"):
        replay(pending.data["flow_run_id"])
    gone = request_flow_run(runs, flow_name="etl", entrypoint="tests.runtime.no_such_module:etl",
                            working_dir=str(REPO), parameters={})
    from ledgerflow.runtime import RunNotAdoptable

    with pytest.raises(RunNotAdoptable):
        execute_flow_run(gone.data["flow_run_id"])
    with pytest.raises(RunNotAdoptable, match="cannot import module"):
        replay(gone.data["flow_run_id"])
