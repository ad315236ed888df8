"""Every example runs as `python examples/<name>.py` against the embedded store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerflow.events import StoredEvent, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, home: Path) -> tuple[subprocess.CompletedProcess[str], list[StoredEvent]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env["LEDGERFLOW_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")], check=False, capture_output=True, text=True, env=env,
        timeout=120,
    )
    store = open_store(f"sqlite:///{home / 'ledgerflow.db'}")
    try:
        return result, store.read_all(limit=100_000)
    finally:
        store.close()


def finals(events: list[StoredEvent]) -> list[str]:
    return [e.type for e in events if e.type.startswith("flow-run.") and e.type.split(".")[1] in ("Completed", "Failed")]


def test_hello_world(tmp_path: Path) -> None:
    result, events = run_example("hello_world", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Hello, world!" in result.stderr
    assert finals(events) == ["flow-run.Completed"]


def test_dynamic_workflow(tmp_path: Path) -> None:
    result, events = run_example("dynamic_workflow", tmp_path)
    assert "{'reviewed': 2, 'booked': 5}" in result.stdout
    names = [e.data["task_name"] for e in events if e.type == "task-run.created"]
    assert names.count("review") == 2 and names.count("book") == 5


def test_robust_task(tmp_path: Path) -> None:
    result, events = run_example("robust_task", tmp_path)
    assert result.returncode == 0, result.stderr
    types = [e.type for e in events]
    assert types.count("task-run.AwaitingRetry") == 2 and types.count("task-run.Cached") == 1
    assert result.stderr.count("parsing for real") == 1


def test_resilient_api_call(tmp_path: Path) -> None:
    result, events = run_example("resilient_api_call", tmp_path)
    assert "Abort: no API token" in result.stdout
    assert [e.type for e in events].count("task-run.AwaitingRetry") == 2
    assert finals(events) == ["flow-run.Completed", "flow-run.Failed"]


def test_subflows(tmp_path: Path) -> None:
    result, events = run_example("subflows", tmp_path)
    assert "loaded 10 rows" in result.stdout
    flows = [e.data["flow_name"] for e in events if e.type == "flow-run.created"]
    assert flows == ["subflows", "ingestion", "transformation", "load"]
    children = [e for e in events if e.type == "flow-run.created" and e.data.get("parent_task_run_id")]
    assert len(children) == 3


def test_async_concurrency(tmp_path: Path) -> None:
    result, events = run_example("async_concurrency", tmp_path)
    assert "Amsterdam" in result.stdout
    assert [e.type for e in events].count("task-run.Completed") == 4


def test_debugging_records_artifacts(tmp_path: Path) -> None:
    result, events = run_example("debugging", tmp_path)
    assert "Failed: ValueError: 1 invalid rows" in result.stdout
    artifacts = {e.data["key"]: e.data for e in events if e.type == "artifact.created"}
    assert artifacts["rejected-rows"]["artifact_type"] == "table"
    assert artifacts["rejected-rows"]["data"] == [{"id": 2, "amount": -3}]
    assert "Validation failed" in artifacts["validation-report"]["data"]
    assert all(a.get("task_run_id") for a in artifacts.values())


def test_etl_demo(tmp_path: Path) -> None:
    result, events = run_example("etl", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "10 task runs, 1 retry" in result.stdout
    assert "loaded 4 regions" in result.stderr
    assert finals(events) == ["flow-run.Completed", "flow-run.Completed"]


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_every_example_is_tested(name: str) -> None:
    assert f"def test_{name}" in Path(__file__).read_text()
