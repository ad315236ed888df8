"""Readable output (issue 12 §7): 80-column tables, task names in logs, a Failed run's traceback.

The commands run as real processes with `COLUMNS=80`, as in a terminal of that width.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerflow.events import open_store
from ledgerflow.runtime import flow, get_run_logger, task
from ledgerflow.runtime.testing import harness

WIDTH = 80


@task(tags=["a-long-tag-for-narrow-terminals"])
def extract_everything_from_the_warehouse(n: int) -> list[int]:
    get_run_logger().info("extracted %s rows", n)
    return list(range(n))


@task
def check_every_row_for_negative_amounts(rows: list[int]) -> int:
    raise ValueError("row 3 has a negative amount, and this message is long enough to need wrapping")


@flow(name="a-rather-long-flow-name-for-narrow-terminals")
def nightly(n: int = 3) -> int:
    get_run_logger().info("starting")
    checked: int = check_every_row_for_negative_amounts(extract_everything_from_the_warehouse(n))
    return checked


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    with harness(f"sqlite:///{home / 'ledgerflow.db'}"):
        with pytest.raises(ValueError):
            nightly()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    return {**environ, "LEDGERFLOW_HOME": str(home), "NO_COLOR": "1", "COLUMNS": str(WIDTH)}


def ledgerflow(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.api", *args], capture_output=True, text=True, env=env, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_id(env: dict[str, str]) -> str:
    with open_store(f"sqlite:///{env['LEDGERFLOW_HOME']}/ledgerflow.db") as store:
        (failed,) = store.read_all(types=["flow-run.Failed"])
    return str(failed.data["flow_run_id"])


def assert_fits(output: str, *headers: str) -> None:
    lines = output.splitlines()
    assert lines and all(len(line) <= WIDTH for line in lines), "\n".join(line for line in lines if len(line) > WIDTH)
    for header in headers:  # each header word whole on its line, never `DURA` / `TION`
        words = header.split()
        assert any(all(re.search(rf"(^|\s){word}(\s|$)", line) for word in words) for line in lines) or all(
            any(re.search(rf"(^|\s){word}(\s|$)", line) for line in lines) for word in words
        ), f"{header!r} is broken in:\n{output}"


def test_flow_run_ls_fits_80_columns_without_breaking_headers(env: dict[str, str]) -> None:
    listed = ledgerflow(env, "flow-run", "ls")
    assert_fits(listed, "ID", "FLOW", "NAME", "STATE", "CREATED", "DURATION", "TAGS")
    assert re.search(r"^ID\s+FLOW\s+NAME\s+STATE\s+CREATED\s+DURATION\s+TAGS\s*$", listed.splitlines()[0])
    assert "Failed" in listed


def test_inspect_fits_and_shows_the_failures_traceback(env: dict[str, str]) -> None:
    shown = ledgerflow(env, "flow-run", "inspect", run_id(env))
    assert_fits(shown, "TIME", "RUN", "STATE", "ATTEMPT", "DETAIL", "TASK RUN", "ID", "START", "DURATION", "ATTEMPTS")
    trace = shown[shown.index("traceback"):]
    assert "Traceback (most recent call last):" in trace
    assert __file__ in trace.replace("\n", "")  # the user's frames, where the error was raised
    assert 'raise ValueError("row 3 has a negative amount' in trace.replace("\n", "")
    assert "runtime/task_engine.py" not in trace  # not ledgerflow's own machinery


def test_stats_fits_80_columns(env: dict[str, str]) -> None:
    assert_fits(ledgerflow(env, "stats", "--since", "1h"), "RUNS", "COMPLETED", "FAILED", "CRASHED", "SUCCESS", "P50")
    assert_fits(ledgerflow(env, "stats", "--since", "1h", "--by", "task"), "TASK", "RUNS", "SUCCESS")


def test_log_lines_name_their_task_run(env: dict[str, str]) -> None:
    logs = " ".join(ledgerflow(env, "flow-run", "logs", run_id(env)).split())  # long lines wrap at 80
    assert re.search(r"INFO flow \| starting \d", logs), logs
    assert re.search(r"INFO extract_everything_from_the_warehouse-0 \| extracted 3 rows \d", logs), logs
    assert re.search(r"ERROR check_every_row_for_negative_amounts-0 \| Finished in state Failed", logs), logs
