"""Artifacts are events of the run that created them."""

from __future__ import annotations

import pytest

from ledgerflow.events import EventStore
from ledgerflow.runtime import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    flow,
    task,
    update_progress_artifact,
)
from tests.runtime.conftest import run_events


def test_each_kind_of_artifact(runs: EventStore) -> None:
    @task
    def report() -> None:
        create_table_artifact({"a": [1, 2]}, key="numbers")

    @flow
    def publish() -> None:
        create_markdown_artifact("# Done", key="summary", description="what happened")
        create_link_artifact("https://example.invalid/report", link_text="report")
        progress = create_progress_artifact(10, key="progress")
        update_progress_artifact(progress, 100)
        report()

    state = publish(return_state=True)
    events = run_events(runs, state.flow_run_id)
    created = [e.data for e in events if e.type == "artifact.created"]
    assert [(a["artifact_type"], a.get("key")) for a in created] == [
        ("markdown", "summary"), ("link", None), ("progress", "progress"), ("table", "numbers"),
    ]
    assert created[1]["data"] == {"link": "https://example.invalid/report", "link_text": "report"}
    assert "task_run_id" not in created[0] and "task_run_id" in created[3]
    (updated,) = [e.data for e in events if e.type == "artifact.updated"]
    assert updated["artifact_id"] == created[2]["artifact_id"] and updated["data"] == 100.0


def test_bad_artifacts_are_refused(runs: EventStore) -> None:
    @flow
    def bad(kind: str) -> None:
        if kind == "key":
            create_markdown_artifact("x", key="Not Valid")
        else:
            create_progress_artifact(150)

    for kind, message in [("key", "lowercase"), ("progress", "between 0 and 100")]:
        with pytest.raises(ValueError, match=message):
            bad(kind)
    with pytest.raises(RuntimeError, match="inside a flow"):
        create_markdown_artifact("outside")
