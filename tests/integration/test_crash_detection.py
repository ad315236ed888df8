"""Crash detection on both stores: a flow run in a real process killed with SIGKILL mid-task
ends `Crashed`, found by the server's monitor or, with no server, by the next `ledgerflow`
process; a killed run that was being cancelled ends `Cancelled`; the verdict is written once
however many detectors race; consumers (a subscription, an automation) see it; and live runs
with a short heartbeat interval are never taken for dead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from ledgerflow.api.liveness import end_dead_runs
from ledgerflow.events import EventStore, StoredEvent, open_store
from ledgerflow.events.liveness import HEARTBEAT, STALE_AFTER, ProcessIdentity, end_if_dead, this_process
from ledgerflow.events.model import utcnow
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import cancel_flow_run
from ledgerflow.projections.readmodel import ReadModel
from tests.api.conftest import make_server, wait_until
from tests.notifications.receivers import HttpReceiver, serving_http

__all__ = ["make_server"]  # the API tests' live server fixture

INTERVAL = 0.5
"""The killed runs' heartbeat interval (seconds)."""
SLACK = 1.0
"""Seconds a detector may take beyond its bound on a loaded test machine."""

FLOW = textwrap.dedent(
    """
    import pathlib, socket, sys, time

    if len(sys.argv) > 4:  # this process stands for one on another machine
        socket.gethostname = lambda: sys.argv[4]

    from ledgerflow import flow, task

    @task
    def step(folder: str, i: int, seconds: float) -> None:
        pathlib.Path(folder, f"step-{i}").write_text("started")
        time.sleep(seconds)

    @flow
    def doomed(folder: str, steps: int, seconds: float) -> None:
        for i in range(steps):
            step(folder, i, seconds)

    doomed(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
    """
)


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def environment(tmp_path: Path, store_url: str, interval: float = INTERVAL) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(tmp_path / "home"), LEDGERFLOW_DATABASE_URL=store_url,
               LEDGERFLOW_HEARTBEAT_SECONDS=str(interval), COLUMNS="200")
    return env


class FlowProcess:
    """`python flow.py` running the flow `doomed` in a process of its own."""

    def __init__(self, tmp_path: Path, store_url: str, *, steps: int = 1, seconds: float = 600,
                 host: str | None = None, interval: float = INTERVAL) -> None:
        self.folder = tmp_path / "work"
        self.folder.mkdir(exist_ok=True)
        script = tmp_path / "flow.py"
        script.write_text(FLOW)
        args = [sys.executable, str(script), str(self.folder), str(steps), str(seconds)] + ([host] if host else [])
        self.process = subprocess.Popen(args, env=environment(tmp_path, store_url, interval), cwd=tmp_path)

    def started(self, store: EventStore, *, beats: bool = True) -> str:
        """The run's id once its first task runs (and, with `beats`, it has beaten once)."""
        wait_until(lambda: (self.folder / "step-0").exists() or self.process.poll() is not None)
        assert self.process.poll() is None, "the flow process ended early"
        found: list[str] = []

        def ready() -> bool:
            found[:] = [e.data["flow_run_id"] for e in store.read_all(types=["flow-run.created"])]
            return bool(found) and (not beats or bool(store.read_stream(flow_run_stream(found[0]), types=[HEARTBEAT])))

        wait_until(ready)
        return found[0]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def finished(self) -> int:
        return self.process.wait(60)


@pytest.fixture
def start_flow(tmp_path: Path, store_url: str) -> Iterator[Callable[..., FlowProcess]]:
    """Starts flow processes (keyword arguments: FlowProcess's); kills those left at the end."""
    started: list[FlowProcess] = []

    def start(**options: object) -> FlowProcess:
        started.append(FlowProcess(tmp_path, store_url, **options))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for each in started:
        if each.process.poll() is None:
            each.kill()


def flow_states(store: EventStore, run_id: str) -> list[str]:
    return [e.type for e in store.read_stream(flow_run_stream(run_id))
            if e.type.startswith("flow-run.") and e.type not in ("flow-run.created", HEARTBEAT)]


def events_of(store: EventStore, run_id: str, event_type: str) -> list[StoredEvent]:
    return store.read_stream(flow_run_stream(run_id), types=[event_type])


def ledgerflow(tmp_path: Path, store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("ledgerflow")), *args]
    return subprocess.run(command, env=environment(tmp_path, store_url), capture_output=True, text=True, timeout=120)


# -- without a server --------------------------------------------------------------------------


def test_the_next_cli_process_ends_a_killed_run_crashed_at_once(
    start_flow: Callable[..., FlowProcess], runs: EventStore, tmp_path: Path, store_url: str,
) -> None:
    flow_ = start_flow(interval=30)  # no heartbeat is missed: the pid tells
    run_id = flow_.started(runs, beats=False)
    subscription = runs.subscribe(after=runs.head(), types=["flow-run.Crashed"])
    flow_.kill()

    listed = ledgerflow(tmp_path, store_url, "flow-run", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "Crashed" in listed.stdout and "Running" not in listed.stdout
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Crashed"]
    [crashed] = events_of(runs, run_id, "flow-run.Crashed")
    assert f"pid {flow_.process.pid}" in crashed.data["message"] and crashed.data["error"]["type"] == "Crashed"
    # The task run that was running crashed with it.
    assert [e.data["task_run_id"] for e in events_of(runs, run_id, "task-run.Crashed")] == \
        [e.data["task_run_id"] for e in events_of(runs, run_id, "task-run.created")]
    # A consumer following the log receives it.
    received = subscription.poll(timeout=30)
    assert [e.id for e in received] == [crashed.id]
    # Looking again writes nothing more.
    assert ledgerflow(tmp_path, store_url, "flow-run", "inspect", run_id).returncode == 0
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Crashed"]


def test_the_listing_shows_the_runs_it_ended_while_an_older_transaction_holds_back_what_readers_see(
    tmp_path: Path, postgres_schema_url: str, postgres_server_url: str,
) -> None:
    # On PostgreSQL a reader sees a commit once no older transaction in the cluster is open:
    # the listing's own Crashed event stays out of sight while another client's goes on.
    flow_ = FlowProcess(tmp_path, postgres_schema_url, interval=30)
    try:
        with open_store(postgres_schema_url) as runs:
            run_id = flow_.started(runs, beats=False)
        flow_.kill()
        with psycopg.connect(postgres_server_url) as older:
            older.execute("SELECT pg_current_xact_id()")
            ends = threading.Timer(2.0, older.commit)
            ends.start()
            listed = ledgerflow(tmp_path, postgres_schema_url, "flow-run", "ls")
            ends.join()
        assert listed.returncode == 0, listed.stderr
        assert "Crashed" in listed.stdout and "Running" not in listed.stdout, listed.stdout
        assert run_id[:8] in listed.stdout
    finally:
        if flow_.process.poll() is None:
            flow_.kill()


def test_a_run_on_another_host_ends_crashed_once_its_heartbeats_are_stale(
    start_flow: Callable[..., FlowProcess], runs: EventStore, tmp_path: Path, store_url: str,
) -> None:
    interval = 2.0
    flow_ = start_flow(host="worker-elsewhere", interval=interval)
    run_id = flow_.started(runs)
    flow_.kill()
    read_model = ReadModel(runs)
    # Its pid means nothing here: until its heartbeats are overdue it counts as running.
    assert end_dead_runs(read_model) == []
    assert flow_states(runs, run_id) == ["flow-run.Running"]

    wait_until(lambda: bool(end_dead_runs(read_model)), timeout=30)
    [crashed] = events_of(runs, run_id, "flow-run.Crashed")
    silent = crashed.occurred - last_sign_of_life(runs, run_id)
    assert timedelta(seconds=STALE_AFTER * interval) < silent <= timedelta(seconds=2 * interval + SLACK)
    assert "no heartbeat from worker-elsewhere" in crashed.data["message"]
    listed = ledgerflow(tmp_path, store_url, "flow-run", "ls")
    assert "Crashed" in listed.stdout and "Running" not in listed.stdout


def last_sign_of_life(store: EventStore, run_id: str) -> datetime:
    return max(e.occurred for e in store.read_stream(flow_run_stream(run_id), types=["flow-run.Running", HEARTBEAT]))


def test_a_killed_run_that_was_being_cancelled_ends_cancelled(
    start_flow: Callable[..., FlowProcess], runs: EventStore, tmp_path: Path, store_url: str,
) -> None:
    flow_ = start_flow()
    run_id = flow_.started(runs)
    flow_.kill()
    cancel_flow_run(runs, run_id, message="stop it")  # nobody is left to end it
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Cancelling"]

    assert ledgerflow(tmp_path, store_url, "flow-run", "ls").returncode == 0
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Cancelling", "flow-run.Cancelled"]
    assert len(events_of(runs, run_id, "task-run.Cancelled")) == 1
    assert not events_of(runs, run_id, "task-run.Crashed")


def test_racing_detectors_write_the_verdict_once(
    start_flow: Callable[..., FlowProcess], runs: EventStore, store_factory: Callable[[], EventStore],
    tmp_path: Path, store_url: str,
) -> None:
    flow_ = start_flow()
    run_id = flow_.started(runs)
    flow_.kill()
    here = this_process()
    stores = [store_factory() for _ in range(4)]
    start = threading.Barrier(len(stores))
    verdicts: list[StoredEvent | None] = []

    def detect(store: EventStore) -> None:
        start.wait()
        verdicts.append(end_if_dead(store, run_id, here))

    threads = [threading.Thread(target=detect, args=(store,)) for store in stores]
    clis = [subprocess.Popen([str(Path(sys.executable).with_name("ledgerflow")), "flow-run", "ls"],
                             env=environment(tmp_path, store_url), stdout=subprocess.DEVNULL) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(cli.wait(120) == 0 for cli in clis)

    [crashed] = events_of(runs, run_id, "flow-run.Crashed")
    assert len(events_of(runs, run_id, "task-run.Crashed")) == 1
    assert {event.id for event in verdicts if event is not None} <= {crashed.id}
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Crashed"]


# -- with a server -----------------------------------------------------------------------------

CRASH_RULE = {
    "name": "crashes",
    "trigger": {"match": {"events": ["flow-run.Crashed"]}},
    "actions": [{"type": "slack", "block": "ops", "text": "{{ flow_run.flow_name }} crashed: {{ event.data.message }}"}],
}


@pytest.mark.parametrize("host", [None, "worker-elsewhere"], ids=["same-host", "other-host"])
def test_the_server_monitor_ends_a_killed_run_crashed_within_two_heartbeats(
    start_flow: Callable[..., FlowProcess], make_server: Callable[..., str], runs: EventStore, host: str | None,
) -> None:
    receiver = HttpReceiver()
    with serving_http(receiver) as slack:
        server = make_server()
        block = {"name": "ops", "type": "slack-webhook", "fields": {"url": f"{slack}/services/crash"}}
        assert httpx.post(f"{server}/api/blocks", json=block).status_code == 201
        assert httpx.post(f"{server}/api/automations", json=CRASH_RULE).status_code == 201
        flow_ = start_flow(host=host)
        run_id = flow_.started(runs)
        flow_.kill()

        wait_until(lambda: flow_states(runs, run_id)[-1:] == ["flow-run.Crashed"], timeout=30)
        [crashed] = events_of(runs, run_id, "flow-run.Crashed")
        silent = crashed.occurred - last_sign_of_life(runs, run_id)
        assert silent <= timedelta(seconds=2 * INTERVAL + SLACK)
        if host is not None:  # judged by its heartbeats only
            assert silent > timedelta(seconds=STALE_AFTER * INTERVAL)
        # The automation engine saw the crash and notified.
        wait_until(lambda: bool(receiver.at("/services/crash")), timeout=30)
        [message] = receiver.at("/services/crash")
        assert orjson.loads(message.body)["text"].startswith("doomed crashed: the flow run crashed")
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Crashed"]


def test_the_server_monitor_ends_a_killed_cancelling_run_cancelled(
    start_flow: Callable[..., FlowProcess], make_server: Callable[..., str], runs: EventStore,
) -> None:
    make_server()
    flow_ = start_flow()
    run_id = flow_.started(runs)
    # Cancel while the process lives (its one sync task sleeps on, so it cannot end the run
    # itself), then kill it: killed first, the monitor may rightly call it Crashed before the cancel.
    cancel_flow_run(runs, run_id)
    flow_.kill()
    wait_until(lambda: flow_states(runs, run_id)[-1:] == ["flow-run.Cancelled"], timeout=30)
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Cancelling", "flow-run.Cancelled"]


@pytest.mark.parametrize("host", [None, "worker-elsewhere"], ids=["same-host", "other-host"])
def test_live_runs_with_a_short_heartbeat_are_never_taken_for_dead(
    start_flow: Callable[..., FlowProcess], make_server: Callable[..., str], runs: EventStore, host: str | None,
) -> None:
    make_server()  # its monitor looks every 1/4 interval
    flow_ = start_flow(steps=12, seconds=0.4, host=host, interval=1.0)
    run_id = flow_.started(runs)
    read_model = ReadModel(runs)
    elsewhere = ProcessIdentity("yet-another-host", 1, utcnow())
    sweeps = 0
    while flow_.process.poll() is None:  # sweep as seen from this host and from another one, all along
        assert end_dead_runs(read_model) == [] and end_dead_runs(read_model, elsewhere) == []
        sweeps += 1
        threading.Event().wait(0.2)  # as often as the monitor looks
    assert flow_.finished() == 0 and sweeps > 3
    assert flow_states(runs, run_id) == ["flow-run.Running", "flow-run.Completed"]
    assert len(events_of(runs, run_id, HEARTBEAT)) >= 3
