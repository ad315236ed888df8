"""Cancelling and executing runs whose events go to a server (`LEDGERFLOW_API_URL`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from ledgerflow.events import open_store
from ledgerflow.events.runs import read_flow_run, request_flow_run
from tests.integration.test_cli_control import LEDGERFLOW, REPO, cli_env, run_cancelled_from_the_cli


def test_a_remote_flow_is_cancelled_through_the_server(
    tmp_path: Path, store_url: str, make_server: Callable[..., str]
) -> None:
    url = make_server()
    remote = cli_env(tmp_path, "sqlite:///unused-when-remote.db", LEDGERFLOW_API_URL=url)
    run_cancelled_from_the_cli(tmp_path, remote, remote, store_url)


def test_a_requested_run_is_executed_against_the_server(
    tmp_path: Path, store_url: str, make_server: Callable[..., str]
) -> None:
    url = make_server()
    with open_store(store_url) as store:
        scheduled = request_flow_run(
            store, flow_name="add", entrypoint="tests.runtime.sample_flows:add", working_dir=str(REPO),
            parameters={"a": 2, "b": 3},
        )
        run_id = scheduled.data["flow_run_id"]
        env = cli_env(tmp_path, "sqlite:///unused-when-remote.db", LEDGERFLOW_API_URL=url)
        done = subprocess.run([LEDGERFLOW, "flow-run", "execute", run_id], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        history = read_flow_run(store, run_id)
        assert history.state is not None and history.state.name == "Completed"
        assert history.events[-1].data["result"]["value"] == 5
    assert not (tmp_path / "unused-when-remote.db").exists()
