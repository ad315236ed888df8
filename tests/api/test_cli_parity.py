"""One answer everywhere: with LEDGERFLOW_API_URL set, every CLI command answers from the
server's store (not the local LEDGERFLOW_DATABASE_URL), or says it is local-only; runs are
named by id, unique id prefix or run name on the CLI and the API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import NewEvent, StreamAppend, open_store
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.remote import HttpEventLog
from tests.api.conftest import wait_until

FLOW = '''
import sys

from ledgerflow import flow, get_run_logger, task


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task
def load(rows: list[int]) -> int:
    get_run_logger().info("loaded %d rows into the parity table", len(rows))
    return len(rows)


@flow(name=sys.argv[1])
def parity() -> int:
    return load(extract())


if __name__ == "__main__":
    parity()
'''


def _env(tmp_path: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(tmp_path / "client"), LEDGERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'local.db'}",
               NO_COLOR="1", COLUMNS="250")
    if api_url:
        env["LEDGERFLOW_API_URL"] = api_url
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def _ok(env: dict[str, str], *args: str) -> str:
    done = _cli(env, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def _run_flow(tmp_path: Path, env: dict[str, str], flow_name: str) -> None:
    script = tmp_path / "parity_flow.py"
    script.write_text(FLOW)
    done = subprocess.run([sys.executable, str(script), flow_name], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def _one_line_refusal(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) <= 2, done.stderr


@pytest.fixture
def served(tmp_path: Path, make_server: Callable[..., str], store_url: str) -> str:
    """A live server on the test's store; the client's own database holds a different run."""
    _run_flow(tmp_path, _env(tmp_path, None), "local-only-flow")
    return make_server()


def test_every_command_answers_from_the_server(tmp_path: Path, served: str, store_url: str) -> None:
    env = _env(tmp_path, served)
    _run_flow(tmp_path, env, "served-flow")
    with httpx.Client(base_url=served) as http:
        wait_until(lambda: any(r["state_name"] == "Completed" for r in http.get("/api/flow-runs").json()["items"]))
    store = open_store(store_url)
    try:
        ApiKeys(engine_of(store)).create("server-key", "read")
    finally:
        store.close()

    listing = _ok(env, "flow-run", "ls")
    assert "served-flow" in listing and "local-only-flow" not in listing
    row = next(line for line in listing.splitlines() if "served-flow" in line)
    run_id, run_name = row.split()[0], row.split()[2]
    assert run_name.startswith("served-flow-")

    inspected = _ok(env, "flow-run", "inspect", run_id)
    assert f"id {run_id}" in inspected and "Completed" in inspected and "extract" in inspected
    assert f"id {run_id}" in _ok(env, "flow-run", "inspect", run_name)
    assert "loaded 3 rows into the parity table" in _ok(env, "flow-run", "logs", run_id)
    assert "loaded 3 rows" in _ok(env, "flow-run", "logs", "--follow", run_id[:8])  # it ended: returns at once
    tree = _ok(env, "flow-run", "lineage", run_name)
    assert "extract" in tree and "load" in tree

    stats = _ok(env, "stats")
    assert "served-flow" in stats and "local-only-flow" not in stats

    appended = _ok(env, "events", "append", "parity-1", "parity.checked", '{"n": 1}')
    assert "parity.checked" in appended
    store = open_store(store_url)
    try:
        assert [e.type for e in store.read_stream("parity-1")] == ["parity.checked"]
        count, head = len(store.read_all(limit=100_000)), store.head()
    finally:
        store.close()
    assert _ok(env, "events", "verify").startswith(f"intact: {count:,} events")
    status = _ok(env, "projections", "status")
    assert "runs" in status and "lineage" in status and head in status
    assert "server-key" in _ok(env, "api-key", "ls")

    local = open_store(f"sqlite:///{tmp_path / 'local.db'}")
    try:
        assert local.read_stream("parity-1") == []
    finally:
        local.close()
    _one_line_refusal(_cli(env, "projections", "rebuild"), "works on the database directly")
    _one_line_refusal(_cli(env, "api-key", "create", "--name", "x"), "works on the database directly")


def test_ambiguous_prefixes_and_names_are_refused_with_their_candidates(tmp_path: Path, served: str) -> None:
    sink = HttpEventLog(served)
    for run_id, name in (("abc-1", "nightly"), ("abc-2", "nightly"), ("xyz-1", "hourly")):
        sink.append_streams([StreamAppend(f"flow-run-{run_id}", [NewEvent(
            type="flow-run.created", data={"flow_run_id": run_id, "flow_name": "etl", "run_name": name},
        )])])
    sink.close()
    with httpx.Client(base_url=served) as http:
        wait_until(lambda: http.get("/api/flow-runs/xyz-1").status_code == 200)
        assert http.get("/api/flow-runs/xy").json()["flow_run"]["id"] == "xyz-1"
        assert http.get("/api/flow-runs/hourly/logs").status_code == 200
        assert http.get("/api/flow-runs/hourly/lineage").json()["root"] == "xyz-1"
        ambiguous = http.get("/api/flow-runs/abc")
        assert ambiguous.status_code == 422
        assert "abc-1" in ambiguous.json()["detail"] and "abc-2" in ambiguous.json()["detail"]
        assert http.get("/api/flow-runs/nightly").status_code == 422
        assert http.get("/api/flow-runs/nothing-like-it").status_code == 404

    env = _env(tmp_path, served)
    assert "id xyz-1" in _ok(env, "flow-run", "inspect", "hourly")
    refused = _cli(env, "flow-run", "inspect", "abc")
    _one_line_refusal(refused, "abc-1")
    assert "abc-2" in refused.stderr
    _one_line_refusal(_cli(env, "flow-run", "cancel", "nightly"), "abc-2")


def test_local_commands_take_prefixes_and_names(tmp_path: Path) -> None:
    env = _env(tmp_path, None)
    _run_flow(tmp_path, env, "local-flow")
    row = next(line for line in _ok(env, "flow-run", "ls").splitlines() if "local-flow" in line)
    run_id, run_name = row.split()[0], row.split()[2]
    assert f"id {run_id}" in _ok(env, "flow-run", "inspect", run_id[:13])
    assert "loaded 3 rows" in _ok(env, "flow-run", "logs", run_name)
    assert "extract" in _ok(env, "flow-run", "lineage", run_id[:8])
    _one_line_refusal(_cli(env, "flow-run", "inspect", "no-such-run"), "no-such-run")
