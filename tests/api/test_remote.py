"""The runtime talking to a server: the HTTP sink, the examples unchanged in both modes, and
CLI commands with LEDGERFLOW_API_URL set."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.events import (
    ConcurrencyConflict,
    InvalidEvent,
    NewEvent,
    StoredEvent,
    StoreUnavailable,
    StreamAppend,
    open_store,
)
from ledgerflow.runtime.remote import HttpEventLog
from tests.api.conftest import free_port, serving, settings_for, wait_until

EXAMPLES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.py"))


def test_sink_appends_like_the_store(server_url: str, store_url: str) -> None:
    sink = HttpEventLog(server_url)
    event = NewEvent(type="demo.started", data={"rows": 3})
    stored = sink.append_streams([StreamAppend("demo-1", [event], "no stream")])
    assert [(e.id, e.stream, e.stream_position, e.data) for e in stored] == [(event.id, "demo-1", 1, {"rows": 3})]
    assert sink.append_streams([StreamAppend("demo-1", [event])]) == stored  # a retry is a no-op
    with pytest.raises(ConcurrencyConflict) as conflict:
        sink.append_streams([StreamAppend("demo-1", [NewEvent(type="demo.again")], 0)])
    assert conflict.value.stream == "demo-1" and conflict.value.actual == 1
    with pytest.raises(InvalidEvent, match="stream"):
        sink.append_streams([StreamAppend("bad name", [NewEvent(type="x")])])
    store = open_store(store_url)
    try:
        assert [e.id for e in store.read_stream("demo-1")] == [event.id]
    finally:
        store.close()
    sink.close()


def test_a_primed_stream_is_read_once_without_a_request(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        events = store.append("primed-1", [NewEvent(type="demo.started"), NewEvent(type="demo.done")])
    log = HttpEventLog(f"http://127.0.0.1:{free_port()}", attempts=1)  # nothing listens there
    log.prime({"primed-1": events})
    with pytest.raises(StoreUnavailable):
        log.read_stream("primed-1", from_version=2)  # not the whole stream: asked of the server
    assert log.read_stream("primed-1") == events
    with pytest.raises(StoreUnavailable):
        log.read_stream("primed-1")  # once only: the next read asks the server
    log.prime({"primed-1": events})
    log.prime({})  # what nobody read is forgotten
    with pytest.raises(StoreUnavailable):
        log.read_stream("primed-1")
    log.close()


def test_sink_retries_until_the_server_is_up(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    sink = HttpEventLog(f"http://127.0.0.1:{port}", attempts=200, first_backoff=0.01, max_backoff=0.05)
    event = NewEvent(type="demo.started")
    result: list[list[StoredEvent]] = []
    sender = threading.Thread(target=lambda: result.append(sink.append_streams([StreamAppend("late-1", [event])])))
    sender.start()
    app = create_app(settings_for(tmp_path, sqlite_url), ApiSettings(port=port))
    with serving(app, port=port):
        sender.join(30)
    sink.close()
    assert result and [e.id for e in result[0]] == [event.id]
    gone = HttpEventLog(f"http://127.0.0.1:{free_port()}", attempts=3, first_backoff=0.01)
    with pytest.raises(StoreUnavailable, match="3 attempts"):
        gone.append_streams([StreamAppend("late-1", [event])])
    gone.close()


def run_example(name: str, home: Path, api_url: str | None) -> tuple[subprocess.CompletedProcess[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env["LEDGERFLOW_HOME"] = str(home)
    home.mkdir(exist_ok=True)  # an example may never open its home (testing_harness uses a throwaway store)
    if api_url:
        env["LEDGERFLOW_API_URL"] = api_url
    examples = Path(__file__).resolve().parents[2] / "examples"
    result = subprocess.run(
        [sys.executable, str(examples / f"{name}.py")], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return result, str(home / "ledgerflow.db")


def test_examples_run_unchanged_against_a_live_server(tmp_path: Path, make_server: Callable[..., str], store_url: str) -> None:
    url = make_server()
    server_store = open_store(store_url)
    try:
        for name in EXAMPLES:
            local, local_db = run_example(name, tmp_path / f"local-{name}", None)
            start = server_store.head()
            remote, remote_db = run_example(name, tmp_path / f"remote-{name}", url)
            assert remote.returncode == local.returncode, (name, remote.stderr)
            if name != "etl":  # its summary reads the log itself, after the run
                assert not Path(remote_db).exists(), "with LEDGERFLOW_API_URL the runtime opened a database"
            local_store = open_store(f"sqlite:///{local_db}")
            try:
                expected = Counter(e.type for e in local_store.read_all(limit=100_000))
            finally:
                local_store.close()
            seen: Counter[str] = Counter()

            def arrived(start: str = start, want: int = sum(expected.values())) -> bool:
                nonlocal seen
                seen = Counter(e.type for e in server_store.read_all(after=start, limit=100_000))
                return sum(seen.values()) >= want

            wait_until(arrived)
            assert seen == expected, name
    finally:
        server_store.close()


def test_events_tail_follows_the_server_feed(tmp_path: Path, server_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(tmp_path / "client"), LEDGERFLOW_API_URL=server_url)
    sink = HttpEventLog(server_url)
    sink.append_streams([StreamAppend("old-1", [NewEvent(type="demo.old")])])
    with subprocess.Popen(
        [sys.executable, "-m", "ledgerflow.api", "events", "tail", "--follow", "--json", "-n", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    ) as tail:
        try:
            assert tail.stdout is not None
            assert '"demo.old"' in tail.stdout.readline()
            marker = str(uuid.uuid4())
            sink.append_streams([StreamAppend("new-1", [NewEvent(type="demo.new", data={"marker": marker})])])
            line = tail.stdout.readline()
            assert '"demo.new"' in line and marker in line
        finally:
            sink.close()
            tail.terminate()
    assert not (tmp_path / "client" / "ledgerflow.db").exists()


def test_flow_runs_are_listed_through_the_server(tmp_path: Path, server_url: str) -> None:
    from ledgerflow.api.cli.remote import remote_flow_runs
    from ledgerflow.events import load_settings

    sink = HttpEventLog(server_url)
    for n, flow_name in enumerate(["etl", "report", "etl"]):
        run = f"r-{n}"
        sink.append_streams([StreamAppend(f"flow-run-{run}", [
            NewEvent(type="flow-run.created", data={"flow_run_id": run, "flow_name": flow_name, "run_name": run}),
        ])])
    sink.close()
    settings = load_settings({"LEDGERFLOW_HOME": str(tmp_path / "client"), "LEDGERFLOW_API_URL": server_url})
    found: list[str] = []

    def listed() -> bool:
        page = remote_flow_runs(settings, flow_name="etl", tags=(), sort="oldest", limit=1)
        found[:] = [r.id for r in page.items]
        if page.next_cursor:
            found.extend(r.id for r in remote_flow_runs(settings, flow_name="etl", cursor=page.next_cursor, sort="oldest").items)
        return len(found) == 2

    wait_until(listed)
    assert found == ["r-0", "r-2"]
    assert not (tmp_path / "client" / "ledgerflow.db").exists()

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(tmp_path / "cli"), LEDGERFLOW_API_URL=server_url, NO_COLOR="1", COLUMNS="200")
    listing = subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", "flow-run", "ls", "--flow", "etl"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    assert "r-0" in listing.stdout and "r-2" in listing.stdout and "r-1" not in listing.stdout
    assert not (tmp_path / "cli" / "ledgerflow.db").exists()
