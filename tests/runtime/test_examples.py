"""Every file in examples/ runs as `python examples/<name>.py` against the embedded store,
exits 0 and prints what it promises: `test_example` finds them all, and an example without
an expectation in CHECKS fails."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.events import StoredEvent, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, home: Path) -> tuple[subprocess.CompletedProcess[str], list[StoredEvent]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env["LEDGERFLOW_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")], check=False, capture_output=True, text=True, env=env, cwd=home,
        timeout=120,
    )
    store = open_store(f"sqlite:///{home / 'ledgerflow.db'}")
    try:
        return result, store.read_all(limit=100_000)
    finally:
        store.close()


def finals(events: list[StoredEvent]) -> list[str]:
    return [e.type for e in events if e.type.startswith("flow-run.") and e.type.split(".")[1] in ("Completed", "Failed")]


Check = Callable[[subprocess.CompletedProcess[str], list[StoredEvent]], None]


def expect_hello_world(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "Hello, world!" in result.stderr
    assert finals(events) == ["flow-run.Completed"]


def expect_dynamic_workflow(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "{'reviewed': 2, 'booked': 5}" in result.stdout
    names = [e.data["task_name"] for e in events if e.type == "task-run.created"]
    assert names.count("review") == 2 and names.count("book") == 5


def expect_robust_task(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    types = [e.type for e in events]
    assert types.count("task-run.AwaitingRetry") == 2 and types.count("task-run.Cached") == 1
    assert result.stderr.count("parsing for real") == 1


def expect_resilient_api_call(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "Abort: no API token" in result.stdout
    assert [e.type for e in events].count("task-run.AwaitingRetry") == 2
    assert finals(events) == ["flow-run.Completed", "flow-run.Failed"]


def expect_subflows(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "loaded 10 rows" in result.stdout
    flows = [e.data["flow_name"] for e in events if e.type == "flow-run.created"]
    assert flows == ["subflows", "ingestion", "transformation", "load"]
    children = [e for e in events if e.type == "flow-run.created" and e.data.get("parent_task_run_id")]
    assert len(children) == 3


def expect_async_concurrency(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "Amsterdam" in result.stdout
    assert [e.type for e in events].count("task-run.Completed") == 4


def expect_debugging(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "Failed: ValueError: 1 invalid rows" in result.stdout
    artifacts = {e.data["key"]: e.data for e in events if e.type == "artifact.created"}
    assert artifacts["rejected-rows"]["artifact_type"] == "table"
    assert artifacts["rejected-rows"]["data"] == [{"id": 2, "amount": -3}]
    assert "Validation failed" in artifacts["validation-report"]["data"]
    assert all(a.get("task_run_id") for a in artifacts.values())


def expect_etl(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "10 task runs, 1 retry" in result.stdout
    assert "loaded 4 regions" in result.stderr
    assert finals(events) == ["flow-run.Completed", "flow-run.Completed"]


def expect_futures_and_mapping(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "{'apple': (50, 2), 'pear': (40, 1), 'fig': (30, 0)}" in result.stdout
    names = [e.data["task_name"] for e in events if e.type == "task-run.created"]
    assert names.count("price") == 3 and names.count("stock") == 3


def expect_hooks(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "hook: task run reserve-0 ended Completed" in result.stdout
    assert "hook: flow run booking-" in result.stdout and "ended Failed: RuntimeError: card declined" in result.stdout
    assert "booking ended Failed" in result.stdout
    assert finals(events) == ["flow-run.Failed"]


def expect_caching(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert result.stderr.count("for real") == 3  # Utrecht, Ghent once each, then Bruges
    assert "[(35.5, 16.5), (49.7, 23.1), (42.6, 19.8)]" in result.stdout
    assert [e.type for e in events].count("task-run.Cached") == 2


def expect_replay(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "first run: Failed (ConnectionError: the warehouse is down)" in result.stdout
    assert "replay: Completed, loaded 5 rows" in result.stdout
    assert result.stderr.count("extracting 2024-05-01") == 1  # the replay reused it
    assert finals(events) == ["flow-run.Failed", "flow-run.Completed"]
    reused = [e.data["cached_from"] for e in events if e.type == "task-run.Reused"]
    original_extract = next(e.data["task_run_id"] for e in events if e.type == "task-run.created")
    assert reused == [original_extract]


def expect_testing_harness(result: subprocess.CompletedProcess[str], events: list[StoredEvent]) -> None:
    assert "test_total passed" in result.stdout
    assert events == []  # the harness kept its runs out of the configured store


CHECKS: dict[str, Check] = {
    name.removeprefix("expect_"): check for name, check in globals().items() if name.startswith("expect_")
}
"""What each example must print and write, by file name: `expect_<name>` above."""


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_example(name: str, tmp_path: Path) -> None:
    assert name in CHECKS, f"examples/{name}.py has no expect_{name}() in tests/runtime/test_examples.py"
    result, events = run_example(name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    CHECKS[name](result, events)
