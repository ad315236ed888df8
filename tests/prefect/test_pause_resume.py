"""Prefect's pause / suspend / resume (docs: "Pause and resume flow runs", "Send and receive
flow run inputs"), as a migrating user writes them, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from ledgerflow import (
    FlowPauseTimeout,
    RunInput,
    flow,
    get_run_logger,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
    task,
)
from ledgerflow.api.cli.main import app as cli
from ledgerflow.api.http.app import create_app
from ledgerflow.events import EventStore
from ledgerflow.events.runs import InvalidRunInput, PauseExpired, RunStateConflict, cancel_flow_run
from ledgerflow.events.transitions import Accepted, Rejected, RunState, decide
from ledgerflow.projections import ReadModel
from ledgerflow.projections.queries import get_run, list_flow_runs
from ledgerflow.runtime import RunNotAdoptable, config, execute_flow_run
from tests.api.conftest import api_settings, local_client, settings_for
from tests.prefect.conftest import run_events, types_of, wait_until

CALLS: list[str] = []


@task
def marvin_setup() -> str:
    CALLS.append("setup")
    return "a raft of ducks walk into a bar..."


@task
def marvin_punchline() -> str:
    CALLS.append("punchline")
    return "it's a wonder none of them ducked!"


@flow
def inspiring_joke(timeout: float = 600) -> list[str]:
    setup = marvin_setup()
    pause_flow_run(timeout=timeout)
    return [setup, marvin_punchline()]


class UserNameInput(RunInput):
    name: str


@flow
def greet_user() -> str:
    user_input = pause_flow_run(wait_for_input=UserNameInput)
    get_run_logger().info("Hello, %s!", user_input.name)
    return f"Hello, {user_input.name}!"


@flow
def ask_a_number() -> int:
    answer: int = pause_flow_run(wait_for_input=int)
    return answer + 1


class ShirtOrder(RunInput):
    size: str
    color: str

    @pydantic.model_validator(mode="after")
    def green_is_not_small(self) -> ShirtOrder:
        if self.color == "green" and self.size == "small":
            raise ValueError("Green is only in-stock for medium, large, and XL sizes.")
        return self


@flow
def get_shirt_order() -> str:
    order = pause_flow_run(wait_for_input=ShirtOrder)
    return f"{order.size} {order.color}"


@task(persist_result=True)
def foo() -> int:
    CALLS.append("foo")
    return 42


@flow(persist_result=True)
def noblock_pausing() -> int:
    x: int = foo()
    approval: UserNameInput = suspend_flow_run(wait_for_input=UserNameInput, timeout=3600)
    return x + len(approval.name)


@task
def try_to_pause() -> None:
    pause_flow_run(timeout=1)


@flow
def pauses_in_a_task() -> None:
    try_to_pause()


def _start(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Call a flow on a thread (it blocks while paused); its outcome lands in the dict."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["state"] = fn(*args, return_state=True)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def _paused_run(store: EventStore, flow_name: str) -> str:
    """The id of the run of `flow_name` once its stream says Paused."""
    found: dict[str, str] = {}

    def paused() -> bool:
        for event in store.read_all(types=["flow-run.Paused"]):
            created = store.read_stream(event.stream, limit=1)[0]
            if created.data.get("flow_name") == flow_name:
                found["id"] = event.data["flow_run_id"]
                return True
        return False

    wait_until(paused)
    return found["id"]


def test_a_paused_flow_blocks_until_resumed(runs: EventStore) -> None:
    CALLS.clear()
    thread, outcome = _start(inspiring_joke)
    run_id = _paused_run(runs, "inspiring-joke")
    assert CALLS == ["setup"]  # execution is blocked after the first task
    assert thread.is_alive()

    resume_flow_run(run_id)
    thread.join(60)
    state = outcome["state"]
    assert state.is_completed()
    assert state.result() == ["a raft of ducks walk into a bar...", "it's a wonder none of them ducked!"]
    assert CALLS == ["setup", "punchline"]
    assert types_of(runs, run_id, "flow-run.") == [
        "flow-run.created", "flow-run.Running", "flow-run.Paused", "flow-run.Running", "flow-run.Completed",
    ]
    paused = run_events(runs, run_id, "flow-run.Paused")[0]
    assert paused.data["pause_key"] == "1" and paused.data["pause_reschedule"] is False
    assert datetime.fromisoformat(paused.data["pause_expiration"]) > paused.occurred + timedelta(seconds=590)


def test_wait_for_input_returns_the_validated_model_and_keeps_the_input_in_the_log(runs: EventStore) -> None:
    thread, outcome = _start(greet_user)
    run_id = _paused_run(runs, "greet-user")
    paused = run_events(runs, run_id, "flow-run.Paused")[0]
    assert paused.data["run_input_schema"]["properties"]["name"]["type"] == "string"

    with pytest.raises(InvalidRunInput, match="waits for input"):
        resume_flow_run(run_id)
    with pytest.raises(InvalidRunInput, match="name"):
        resume_flow_run(run_id, run_input={"name": 3})
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Paused"  # refused: still paused

    resume_flow_run(run_id, run_input=UserNameInput(name="Marvin"))
    thread.join(60)
    assert outcome["state"].result() == "Hello, Marvin!"
    resumed = run_events(runs, run_id, "flow-run.Running")[-1]
    assert resumed.data["run_input"] == {"name": "Marvin"}
    assert any(e.data.get("message") == "Hello, Marvin!" for e in run_events(runs, run_id, "log.emitted"))


def test_a_plain_type_is_wrapped_in_a_value_field(runs: EventStore) -> None:
    thread, outcome = _start(ask_a_number)
    run_id = _paused_run(runs, "ask-a-number")
    resume_flow_run(run_id, run_input={"value": 41})
    thread.join(60)
    assert outcome["state"].result() == 42


def test_a_model_validator_raises_in_the_flow_after_resuming(runs: EventStore) -> None:
    thread, outcome = _start(get_shirt_order)
    run_id = _paused_run(runs, "get-shirt-order")
    resume_flow_run(run_id, run_input={"size": "small", "color": "green"})  # fits the schema
    thread.join(60)
    state = outcome["state"]
    assert state.is_failed()
    with pytest.raises(pydantic.ValidationError, match="Green is only in-stock"):
        state.result()


def test_a_pause_that_is_not_resumed_in_time_fails_the_run(runs: EventStore) -> None:
    state = inspiring_joke(timeout=0.2, return_state=True)
    assert state.is_failed()
    with pytest.raises(FlowPauseTimeout, match="paused and never resumed"):
        state.result()
    run_id = state.flow_run_id
    assert types_of(runs, run_id, "flow-run.")[-2:] == ["flow-run.Paused", "flow-run.Failed"]
    with pytest.raises(RunStateConflict, match="is Failed, not paused"):
        resume_flow_run(run_id)


def test_cancelling_a_paused_run_ends_it(runs: EventStore) -> None:
    thread, outcome = _start(inspiring_joke)
    run_id = _paused_run(runs, "inspiring-joke")
    assert cancel_flow_run(runs, run_id).type == "flow-run.Cancelled"
    thread.join(60)
    assert outcome["state"].is_cancelled()
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Cancelled"


def test_pausing_a_task_run_is_refused(runs: EventStore) -> None:
    state = pauses_in_a_task(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="Cannot pause task runs"):
        state.result()


def test_a_suspended_run_ends_its_process_and_runs_again_reusing_completed_tasks(runs: EventStore) -> None:
    CALLS.clear()
    state = noblock_pausing(return_state=True)
    assert state.is_paused() and state.name == "Suspended"
    run_id = str(state.flow_run_id)
    assert CALLS == ["foo"]
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Suspended"

    resume_flow_run(run_id, run_input={"name": "Arthur"})
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Resuming"

    again = execute_flow_run(run_id)
    assert again.is_completed()
    assert again.result() == 42 + len("Arthur")
    assert CALLS == ["foo"]  # the stored result of the first task was taken, not recomputed
    assert types_of(runs, run_id, "task-run.") == [
        "task-run.created", "task-run.Running", "task-run.Completed", "task-run.Reused",  # Reused carries its creation
    ]
    assert types_of(runs, run_id, "flow-run.") == [
        "flow-run.created", "flow-run.Running", "flow-run.Suspended", "flow-run.Resuming", "flow-run.Pending",
        "flow-run.Running", "flow-run.Completed",
    ]


def test_a_paused_run_is_paused_in_every_view_and_resumes_from_cli_and_api(
    runs: EventStore, store_url: str, tmp_path: Path
) -> None:
    thread, outcome = _start(greet_user)
    run_id = _paused_run(runs, "greet-user")

    read_model = ReadModel(runs)
    assert get_run(read_model, run_id).flow_run.state_name == "Paused"
    assert [r.id for r in list_flow_runs(read_model, state="PAUSED").items] == [run_id]
    with local_client(create_app(settings_for(tmp_path, store_url), api_settings(run_projections=True))) as client:
        wait_until(lambda: client.get(f"/api/flow-runs/{run_id}").json()["flow_run"]["state_name"] == "Paused")
        assert client.post(f"/api/flow-runs/{run_id}/resume", json={"run_input": {"nom": "x"}}).status_code == 422
        listed = CliRunner().invoke(cli, ["flow-run", "ls"], env={"LEDGERFLOW_DATABASE_URL": store_url,
                                                                  "LEDGERFLOW_HOME": str(tmp_path)})
        assert "Paused" in listed.output

        refused = CliRunner().invoke(cli, ["flow-run", "resume", run_id], env={"LEDGERFLOW_DATABASE_URL": store_url,
                                                                               "LEDGERFLOW_HOME": str(tmp_path)})
        assert refused.exit_code == 1 and "waits for input" in refused.output
        resumed = CliRunner().invoke(cli, ["flow-run", "resume", run_id, "--input", '{"name": "Ford"}'],
                                     env={"LEDGERFLOW_DATABASE_URL": store_url, "LEDGERFLOW_HOME": str(tmp_path)})
        assert resumed.exit_code == 0, resumed.output
        assert "Running" in resumed.output
        thread.join(60)
        assert outcome["state"].result() == "Hello, Ford!"
        reply = client.post(f"/api/flow-runs/{run_id}/resume", json={})
        assert reply.status_code == 409 and "not paused" in reply.json()["detail"]


def test_the_api_resumes_with_input(runs: EventStore, store_url: str, tmp_path: Path) -> None:
    thread, outcome = _start(greet_user)
    run_id = _paused_run(runs, "greet-user")
    with local_client(create_app(settings_for(tmp_path, store_url), api_settings(run_projections=False))) as client:
        reply = client.post(f"/api/flow-runs/{run_id}/resume", json={"run_input": {"name": "Zaphod"}})
        assert reply.status_code == 200, reply.text
        assert reply.json()["type"] == "flow-run.Running"
    thread.join(60)
    assert outcome["state"].result() == "Hello, Zaphod!"


def test_resuming_after_the_pause_expired_fails_the_run(runs: EventStore) -> None:
    state = noblock_pausing.with_options(name="short-suspension")(return_state=True)
    run_id = str(state.flow_run_id)
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(PauseExpired, match="never resumed"):
        from ledgerflow.events.runs import resume_flow_run as resume_at

        resume_at(runs, run_id, {"name": "late"}, now=later)
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Failed"


def test_the_rules_of_pausing() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    paused = RunState.named("Paused", pause_expiration=now + timedelta(seconds=5))
    suspended = RunState.named("Suspended", pause_expiration=now - timedelta(seconds=5))
    assert decide(paused, RunState.named("Running"), now) == Accepted(RunState.named("Running"))
    assert isinstance(decide(paused, RunState.named("Running"), now + timedelta(seconds=6)), Rejected)
    assert isinstance(decide(suspended, RunState.named("Resuming"), now), Rejected)  # expired
    assert isinstance(decide(RunState.named("Suspended"), RunState.named("Running"), now), Rejected)
    assert isinstance(decide(RunState.named("Suspended"), RunState.named("Resuming"), now), Accepted)
    assert isinstance(decide(RunState.named("Running"), RunState.named("Resuming"), now), Rejected)
    assert isinstance(decide(paused, RunState.named("Suspended"), now), Rejected)
    assert isinstance(decide(suspended, RunState.named("Failed"), now), Accepted)
    assert isinstance(decide(paused, RunState.named("Cancelled"), now), Accepted)


def test_pause_and_suspend_need_a_flow_run() -> None:
    with pytest.raises(RuntimeError, match="within a flow run"):
        pause_flow_run(timeout=1)
    with pytest.raises(RuntimeError, match="within a flow run"):
        suspend_flow_run()


GATE = threading.Event()


@task(persist_result=True)
def slow_step() -> str:
    CALLS.append("slow")
    GATE.wait(60)
    return "slow done"


@task(persist_result=True)
def last_step(previous: str) -> str:
    CALLS.append("last")
    return previous + ", last done"


@flow(persist_result=True)
def long_job() -> str:
    done: str = last_step(slow_step())
    return done


def test_suspending_a_running_run_from_outside_stops_it_until_resumed(runs: EventStore) -> None:
    CALLS.clear()
    GATE.clear()
    thread, outcome = _start(long_job)
    found: list[str] = []

    def started() -> bool:
        found[:] = [e.data["flow_run_id"] for e in runs.read_all(types=["task-run.Running"])
                    if runs.read_stream(e.stream, limit=1)[0].data["flow_name"] == "long-job"]
        return bool(found)

    wait_until(started)
    run_id = found[0]
    control = config.current().watcher._runs[f"flow-run-{run_id}"]  # the engine's view of its run
    suspend_flow_run(flow_run_id=run_id, timeout=None)
    wait_until(lambda: control.stopping)  # it hears of it within cancel_check_seconds
    GATE.set()  # the running task finishes its call; nothing starts after it
    thread.join(60)
    state = outcome["state"]
    assert state.is_paused() and state.name == "Suspended"
    assert CALLS == ["slow"]
    assert types_of(runs, run_id, "flow-run.")[-1] == "flow-run.Suspended"
    with pytest.raises(RunNotAdoptable, match="is Suspended"):
        execute_flow_run(run_id)  # not resumed yet

    resume_flow_run(run_id)
    assert execute_flow_run(run_id).result() == "slow done, last done"
    assert CALLS == ["slow", "last"]  # the completed slow_step was reused
