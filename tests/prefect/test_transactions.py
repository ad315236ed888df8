"""Prefect 3's transactions (docs: "Write transactions"), as a migrating user writes them, with
their lifecycle in the log, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ledgerflow import (
    CommitMode,
    Transaction,
    flow,
    get_transaction,
    task,
    transaction,
)
from ledgerflow.events import EventStore
from tests.prefect.conftest import run_events, types_of

HOOKS: list[str] = []


@task
def write_file(filename: str, contents: str) -> None:
    """Writes to a file."""
    with open(filename, "w") as f:
        f.write(contents)


@write_file.on_rollback
def del_file(txn: Transaction) -> None:
    """Deletes file."""
    HOOKS.append("rollback")
    os.unlink(txn.get("filename"))


@write_file.on_commit
def confirmation(txn: Transaction) -> None:
    HOOKS.append("commit")


@task
def quality_test(filename: str) -> None:
    """Checks contents of file."""
    with open(filename) as f:
        data = f.readlines()
    if len(data) < 2:
        raise ValueError("Not enough data!")


@flow
def pipeline(filename: str, contents: str) -> None:
    with transaction() as txn:
        txn.set("filename", filename)
        write_file(filename, contents)
        quality_test(filename)


@task
def download_data() -> str:
    """Imagine this downloads some data from an API"""
    HOOKS.append("download")
    return "some data"


@flow(log_prints=True)
def idempotent_pipeline(path: str) -> str:
    with transaction(key="download-and-write-data") as txn:
        if txn.is_committed():
            print("Data file has already been written. Exiting early.")
            return "skipped"
        data = download_data()
        write_file(path, data)
        return "written"


@flow
def eager(path: str) -> None:
    with transaction(commit_mode=CommitMode.EAGER) as txn:
        txn.set("filename", path)
        write_file(path, "one line")
        quality_test(path)


@flow
def off(path: str, commit: bool) -> None:
    with transaction(commit_mode=CommitMode.OFF) as txn:
        txn.set("filename", path)
        write_file(path, "a\nb\n")
        if commit:
            txn.commit()


@flow
def nested(path: str) -> list[Any]:
    seen: list[Any] = []
    with transaction() as outer:
        outer.set("filename", path)
        with transaction() as inner:
            seen.append(inner.get("filename"))
            seen.append(get_transaction() is inner)
            seen.append(inner.get_parent() is outer)
            write_file(path, "a\nb\n")
        seen.append(inner.is_committed())
    seen.append(outer.is_committed() and inner.is_committed())
    return seen


def test_a_failure_in_the_transaction_rolls_back_what_succeeded(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = tmp_path / "side-effect.txt"
    state = pipeline(str(path), "hello world", return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match="Not enough data"):
        state.result()
    assert not path.exists()  # the write_file task's on_rollback hook removed it
    assert HOOKS == ["rollback"]
    run_id = state.flow_run_id
    write_run = next(e.data["task_run_id"] for e in run_events(runs, run_id, "task-run.created")
                     if e.data["task_name"] == "write_file")
    assert [e.type for e in run_events(runs, run_id) if e.data.get("task_run_id") == write_run
            and e.type.startswith("task-run.")] == ["task-run.created", "task-run.Running", "task-run.Completed",
                                                    "task-run.RolledBack"]
    lifecycle = run_events(runs, run_id, "transaction.")
    assert [e.type for e in lifecycle] == ["transaction.opened", "transaction.rolled-back"]
    assert lifecycle[1].data["task_run_ids"] == [write_run]
    assert lifecycle[1].data["error"] == {"type": "ValueError", "message": "Not enough data!"}
    assert any("Running rollback hook 'del_file'" in e.data["message"] for e in run_events(runs, run_id, "log.emitted"))


def test_a_transaction_that_succeeds_commits_and_runs_the_commit_hooks(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = tmp_path / "side-effect.txt"
    state = pipeline(str(path), "hello\nworld\n", return_state=True)
    assert state.is_completed()
    assert path.read_text() == "hello\nworld\n"
    assert HOOKS == ["commit"]
    lifecycle = run_events(runs, state.flow_run_id, "transaction.")
    assert [e.type for e in lifecycle] == ["transaction.opened", "transaction.committed"]
    assert len(lifecycle[1].data["task_run_ids"]) == 2  # write_file and quality_test
    assert "task-run.RolledBack" not in types_of(runs, state.flow_run_id)


def test_a_keyed_transaction_runs_once(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = str(tmp_path / "data.txt")
    first = idempotent_pipeline(path, return_state=True)
    assert first.result() == "written"
    second = idempotent_pipeline(path, return_state=True)
    assert second.result() == "skipped"
    assert HOOKS == ["download", "commit"]
    opened = run_events(runs, second.flow_run_id, "transaction.opened")[0]
    assert opened.data["committed"] is True and opened.data["key"] == "download-and-write-data"
    records = runs.read_stream("transaction-download-and-write-data")
    assert [e.type for e in records] == ["transaction.committed"]
    assert records[0].data["flow_run_id"] == str(first.flow_run_id)
    assert any("already been written" in e.data["message"] for e in run_events(runs, second.flow_run_id, "log.emitted"))


def test_overwrite_runs_it_again(runs: EventStore) -> None:
    with transaction(key="report-2026", overwrite=False) as txn:
        assert not txn.is_committed()
        txn.stage({"rows": 3})
    assert txn.is_committed()
    with transaction(key="report-2026") as again:
        assert again.is_committed()
        assert again.read() == {"rows": 3}
    with transaction(key="report-2026", overwrite=True) as forced:
        assert not forced.is_committed()
    assert len(runs.read_stream("transaction-report-2026")) == 2


def test_eager_commits_each_task_at_once(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = tmp_path / "eager.txt"
    state = eager(str(path), return_state=True)
    assert state.is_failed()
    assert path.exists()  # committed before the failure: nothing to roll back
    assert HOOKS == ["commit"]


def test_off_rolls_back_unless_committed_by_hand(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = tmp_path / "off.txt"
    assert off(str(path), commit=False, return_state=True).is_completed()
    assert not path.exists() and HOOKS == ["rollback"]
    HOOKS.clear()
    assert off(str(path), commit=True, return_state=True).is_completed()
    assert path.exists() and HOOKS == ["commit"]


def test_nested_transactions_share_values_and_commit_with_the_outermost(runs: EventStore, tmp_path: Path) -> None:
    HOOKS.clear()
    path = str(tmp_path / "nested.txt")
    state = nested(path, return_state=True)
    assert state.result() == [path, True, True, False, True]
    assert HOOKS == ["commit"]
    lifecycle = run_events(runs, state.flow_run_id, "transaction.")
    assert [e.type for e in lifecycle] == [
        "transaction.opened", "transaction.opened", "transaction.committed", "transaction.committed",
    ]
    assert lifecycle[1].data["parent_transaction_id"] == lifecycle[0].data["transaction_id"]


def test_get_raises_for_an_unknown_name() -> None:
    with transaction() as txn:
        with pytest.raises(ValueError, match="unknown key: nothing"):
            txn.get("nothing")
        assert txn.get("nothing", "fallback") == "fallback"
    assert get_transaction() is None
