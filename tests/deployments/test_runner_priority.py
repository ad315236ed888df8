"""The built-in runner's run processes run at a lower priority than the server (niceness
`LEDGERFLOW_RUNNER_NICE`, 10 by default): when a hundred runs start at once the server, which
records their starts, is not one process among a hundred on the machine's cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import load_api_settings
from ledgerflow.events import open_store
from ledgerflow.events.runs import request_flow_run
from tests.api.conftest import api_settings, free_port, serving, settings_for, wait_until
from tests.deployments.test_concurrency_and_serve import FLOWS, REPO, state_name


def test_the_runners_run_processes_add_the_configured_niceness(store_url: str, tmp_path: Path) -> None:
    into = tmp_path / "niceness"
    port = free_port()
    app = create_app(settings_for(tmp_path / "server", store_url), api_settings(port=port, run_runner=True, runner_nice=7))
    with serving(app, port), open_store(store_url) as store:
        run_id = str(request_flow_run(store, flow_name="niceness", entrypoint=f"{FLOWS}:niceness", working_dir=str(REPO),
                                      parameters={"into": str(into)}).data["flow_run_id"])
        wait_until(lambda: state_name(store, run_id) == "Completed", timeout=120)
    assert int(into.read_text()) == min(os.nice(0) + 7, 19)


def test_the_niceness_comes_from_the_environment_and_bad_values_are_named() -> None:
    assert load_api_settings({}).runner_nice == 10
    assert load_api_settings({"LEDGERFLOW_RUNNER_NICE": "0"}).runner_nice == 0
    with pytest.raises(ValueError, match="LEDGERFLOW_RUNNER_NICE must be a whole number, not 'low'"):
        load_api_settings({"LEDGERFLOW_RUNNER_NICE": "low"})
    with pytest.raises(ValueError, match="^LEDGERFLOW_RUNNER_NICE: Input should be less than or equal to 19$"):
        load_api_settings({"LEDGERFLOW_RUNNER_NICE": "20"})
