"""Remote mode loses nothing: a run against a server that is down keeps its events in the
spool and `events push` (or the next remote run) forwards them once; a key that may not write
stops a run before any task runs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

from ledgerflow.api.http.app import create_app
from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import EventStore, NewEvent, StreamAppend, open_store
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.remote import HttpEventLog
from ledgerflow.runtime.spool import Spool, decode_appends
from ledgerflow.runtime.writer import RECONNECT_SECONDS
from tests.api.conftest import api_settings, free_port, serving, settings_for, wait_until

FLOW = '''
import pathlib
import sys

from ledgerflow import flow, task


@task
def touch(path: str) -> int:
    pathlib.Path(path).write_text("ran")
    return 21


@task
def double(value: int) -> int:
    return 2 * value


@flow(name="spooled")
def spooled(path: str) -> int:
    return double(touch(path))


if __name__ == "__main__":
    print(spooled(sys.argv[1]))
'''


def _env(home: Path, api_url: str, api_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(home), LEDGERFLOW_API_URL=api_url, NO_COLOR="1", COLUMNS="200")
    if api_key:
        env["LEDGERFLOW_API_KEY"] = api_key
    return env


def _run_flow(tmp_path: Path, env: dict[str, str], side_effect: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "spooled_flow.py"
    script.write_text(FLOW)
    return subprocess.run([sys.executable, str(script), str(side_effect)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def _spooled_ids(spool: Spool) -> list[UUID]:
    lines = spool.path.read_bytes().splitlines()
    return [event.id for line in lines for part in decode_appends(line) for event in part.events]


def test_a_run_against_a_stopped_server_is_spooled_then_pushed_once(tmp_path: Path, store_url: str) -> None:
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}"
    env = _env(tmp_path / "client", url)
    side_effect = tmp_path / "touched"

    ran = _run_flow(tmp_path, env, side_effect)

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "42" and side_effect.exists()
    warnings = [line for line in ran.stderr.splitlines() if "unreachable" in line]
    assert len(warnings) == 1 and warnings[0].startswith("ledgerflow: warning:"), ran.stderr
    assert "Traceback" not in ran.stderr
    spool = Spool.in_home(tmp_path / "client")
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    spooled = _spooled_ids(spool)
    assert len(spooled) >= 6 and len(set(spooled)) == len(spooled)

    with serving(create_app(settings_for(tmp_path / "server", store_url), api_settings()), port=port):
        pushed = _cli(env, "events", "push")
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.strip() == f"delivered {len(spooled)} events"
        assert not spool.path.exists()
        again = _cli(env, "events", "push")
        assert again.stdout.strip() == "delivered 0 events"

        store = open_store(store_url)
        try:
            stored = store.read_all(limit=100_000)
            counts = Counter(event.id for event in stored)
            assert all(counts[event_id] == 1 for event_id in spooled)
            assert [e.id for e in stored if e.id in set(spooled)] == spooled  # in order
        finally:
            store.close()
        verified = _cli(env, "events", "verify")
        assert verified.returncode == 0 and "intact" in verified.stdout, verified.stderr
        listed = _cli(env, "flow-run", "ls")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if "spooled" in line)
        assert "Completed" in row
    assert not (tmp_path / "client" / "ledgerflow.db").exists()


def test_the_next_remote_run_forwards_the_spool_first(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    env = _env(tmp_path / "client", f"http://127.0.0.1:{port}")
    assert _run_flow(tmp_path, env, tmp_path / "first").returncode == 0
    spooled = _spooled_ids(Spool.in_home(tmp_path / "client"))

    with serving(create_app(settings_for(tmp_path / "server", sqlite_url), api_settings()), port=port):
        ran = _run_flow(tmp_path, env, tmp_path / "second")
        assert ran.returncode == 0 and "unreachable" not in ran.stderr, ran.stderr
    assert not Spool.in_home(tmp_path / "client").path.exists()
    store = open_store(sqlite_url)
    try:
        stored = Counter(event.id for event in store.read_all(limit=100_000))
        runs = {e.stream for e in store.read_all(limit=100_000, types=["flow-run.Completed"])}
    finally:
        store.close()
    assert all(stored[event_id] == 1 for event_id in spooled)
    assert len(runs) == 2


def test_a_push_interrupted_after_delivery_neither_loses_nor_doubles(tmp_path: Path, store_url: str) -> None:
    spool = Spool.in_home(tmp_path / "client")
    first = [NewEvent(type="demo.step", data={"n": n}) for n in range(3)]
    second = [NewEvent(type="demo.step", data={"n": n}) for n in range(3, 5)]
    other = [NewEvent(type="demo.other")]
    spool.append([StreamAppend("demo-1", first, 0), StreamAppend("other-1", other)])
    spool.append([StreamAppend("demo-1", second, 3)])
    before_push = spool.path.read_bytes()

    with serving(create_app(settings_for(tmp_path / "server", store_url), api_settings())) as url:
        log = HttpEventLog(url)
        assert spool.forward(log).delivered == 6
        spool.path.write_bytes(before_push)  # as if the process died before rewriting the spool
        report = spool.forward(log)
        log.close()
    assert (report.delivered, report.refused, report.waiting) == (6, 0, 0)
    store = open_store(store_url)
    try:
        demo = store.read_stream("demo-1")
        assert [e.id for e in demo] == [e.id for e in first + second]
        assert [e.stream_position for e in demo] == [1, 2, 3, 4, 5]
        assert len(store.read_all(limit=1000)) == 6
    finally:
        store.close()


def test_a_push_to_a_server_that_is_down_keeps_everything(tmp_path: Path) -> None:
    spool = Spool.in_home(tmp_path / "client")
    spool.append([StreamAppend("demo-1", [NewEvent(type="demo.step")], 0)])
    kept = spool.path.read_bytes()
    env = _env(tmp_path / "client", f"http://127.0.0.1:{free_port()}")
    pushed = _cli(env, "events", "push")
    assert pushed.returncode == 1 and "Traceback" not in pushed.stderr
    assert "1 events still wait" in pushed.stderr
    assert spool.path.read_bytes() == kept


def test_a_read_only_key_stops_the_flow_before_any_task(tmp_path: Path, sqlite_url: str) -> None:
    server_store = open_store(sqlite_url)
    try:
        _, secret = ApiKeys(engine_of(server_store)).create("reader", "read")
        before = server_store.head()
    finally:
        server_store.close()
    side_effect = tmp_path / "touched"
    with serving(create_app(settings_for(tmp_path / "server", sqlite_url), api_settings(auth=True))) as url:
        ran = _run_flow(tmp_path, _env(tmp_path / "client", url, secret), side_effect)
        unknown = _run_flow(tmp_path, _env(tmp_path / "client", url, "lf_not-a-key"), side_effect)
    assert ran.returncode != 0 and not side_effect.exists()
    assert ran.stderr.strip().splitlines() == [
        "error: the API key 'reader' may not write events (scope read); create one with "
        "`ledgerflow api-key create --name NAME --scope write` and set LEDGERFLOW_API_KEY "
        "(LEDGERFLOW_DEBUG=1 shows the traceback)"
    ]
    assert unknown.returncode != 0 and not side_effect.exists()
    assert len(unknown.stderr.strip().splitlines()) == 1 and "refused the API key" in unknown.stderr
    assert not Spool.in_home(tmp_path / "client").path.exists()
    server_store = open_store(sqlite_url)
    try:
        assert server_store.head() == before
    finally:
        server_store.close()


OUTLIVING_FLOW = '''
import pathlib
import socket
import sys
import time

socket.gethostname = lambda: "worker-elsewhere"  # judged by its heartbeats, not by its pid

from ledgerflow import flow, task


@task
def step(folder: str, name: str) -> str:
    (pathlib.Path(folder) / name).write_text("ran")
    return name


@flow(name="outliving")
def outliving(folder: str) -> list[str]:
    first = step(folder, "first")
    while not (pathlib.Path(folder) / "go-on").exists():
        time.sleep(0.05)
    return [first, step(folder, "second")]


if __name__ == "__main__":
    print(outliving(sys.argv[1]))
'''


def test_a_run_that_outlives_a_server_outage_goes_back_to_the_server_and_is_not_taken_for_crashed(
    tmp_path: Path, store_url: str
) -> None:
    """The server stops mid-run (the run spools, its heartbeats too) and comes back: the run
    forwards its spool at its next heartbeat after the writer's reconnect delay, sends to the
    server again, and the restarted server's crash monitor does not count the outage as silence."""
    port = free_port()
    env = _env(tmp_path / "client", f"http://127.0.0.1:{port}") | {"LEDGERFLOW_HEARTBEAT_SECONDS": "0.5"}
    folder = tmp_path / "work"
    folder.mkdir()
    script = tmp_path / "outliving_flow.py"
    script.write_text(OUTLIVING_FLOW)
    app_settings = settings_for(tmp_path / "server", store_url)
    spool = Spool.in_home(tmp_path / "client")
    with serving(create_app(app_settings, api_settings()), port=port):
        process = subprocess.Popen([sys.executable, str(script), str(folder)], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: (folder / "first").exists())
    try:
        wait_until(lambda: spool.path.exists() and len(_spooled_ids(spool)) >= 2)  # heartbeats, spooled
        time.sleep(1.0)  # silent far longer than 1.5 heartbeat intervals, as far as the log knows
        with serving(create_app(app_settings, api_settings()), port=port):
            wait_until(lambda: not spool.path.exists() or not _spooled_ids(spool), timeout=RECONNECT_SECONDS + 10)
            with open_store(store_url) as store:
                beats_before = _heartbeats(store)
                wait_until(lambda: _heartbeats(store) > beats_before)  # sent to the server directly now
            (folder / "go-on").write_text("")
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            assert "second" in out and "server answers again" in err and "unreachable" in err
            with open_store(store_url) as store:
                types = [event.type for event in store.read_all(limit=100_000) if event.type.startswith("flow-run.")]
            assert "flow-run.Crashed" not in types and types.count("flow-run.Completed") == 1
    finally:
        if process.poll() is None:
            process.kill()


def _heartbeats(store: EventStore) -> int:
    return len(store.read_all(types=["flow-run.heartbeat"], limit=100_000))
