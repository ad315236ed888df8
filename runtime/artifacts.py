"""Artifacts: markdown, tables, links and progress, each an event of the current run."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from ledgerflow.events.model import new_id
from ledgerflow.runtime.context import flow_run_var, task_run_var

__all__ = [
    "create_link_artifact",
    "create_markdown_artifact",
    "create_progress_artifact",
    "create_table_artifact",
    "update_progress_artifact",
]

_KEY = re.compile(r"^[a-z0-9-]+$")


def _emit(event_type: str, data: dict[str, Any]) -> None:
    flow_run = flow_run_var.get()
    if flow_run is None:
        raise RuntimeError("artifacts can only be created inside a flow or task run")
    task_run = task_run_var.get()
    data["flow_run_id"] = str(flow_run.flow_run.id)
    if task_run is not None:
        data["task_run_id"] = str(task_run.task_run.id)
    flow_run.emit(event_type, {k: v for k, v in data.items() if v is not None})


def _create(artifact_type: str, data: Any, key: str | None, description: str | None) -> UUID:
    if key is not None and not _KEY.match(key):
        raise ValueError(f"artifact key {key!r} may only hold lowercase letters, digits and dashes")
    artifact_id = new_id()
    _emit(
        "artifact.created",
        {"artifact_id": str(artifact_id), "artifact_type": artifact_type, "key": key, "description": description, "data": data},
    )
    return artifact_id


def create_markdown_artifact(markdown: str, key: str | None = None, description: str | None = None) -> UUID:
    return _create("markdown", markdown, key, description)


def create_table_artifact(
    table: dict[str, list[Any]] | list[dict[str, Any]] | list[list[Any]],
    key: str | None = None,
    description: str | None = None,
) -> UUID:
    return _create("table", table, key, description)


def create_link_artifact(link: str, link_text: str | None = None, key: str | None = None, description: str | None = None) -> UUID:
    return _create("link", {"link": link, "link_text": link_text}, key, description)


def create_progress_artifact(progress: float, key: str | None = None, description: str | None = None) -> UUID:
    return _create("progress", _percent(progress), key, description)


def update_progress_artifact(artifact_id: UUID, progress: float, description: str | None = None) -> UUID:
    _emit("artifact.updated", {"artifact_id": str(artifact_id), "data": _percent(progress), "description": description})
    return artifact_id


def _percent(progress: float) -> float:
    if not 0 <= progress <= 100:
        raise ValueError(f"progress must be between 0 and 100, not {progress}")
    return float(progress)
