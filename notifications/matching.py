"""Does an event match a trigger: its type against the patterns, its flow run against the
resource filters (flow name, tags, deployment, work pool, read from the run's `flow-run.created`).

Pure: the run's facts are handed in (`RunFacts`), so the caller decides how to find them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ledgerflow.events.model import StoredEvent
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.notifications.model import Match

__all__ = ["RunFacts", "compile_patterns", "resource_matches", "run_id_of"]

_RUN_STREAM = "flow-run-"


@dataclass(frozen=True)
class RunFacts:
    """What the resource filters look at, from a run's `flow-run.created` data."""

    flow_run_id: str
    flow_name: str | None = None
    tags: frozenset[str] = frozenset()
    deployment: frozenset[str] = frozenset()
    """The run's deployment id (and name, when the run records one)."""
    work_pool: str | None = None

    @classmethod
    def from_created(cls, flow_run_id: str, data: Mapping[str, Any]) -> RunFacts:
        deployment = {str(data[k]) for k in ("deployment_id", "deployment_name") if data.get(k)}
        tags = data.get("tags") or []
        return cls(
            flow_run_id=flow_run_id,
            flow_name=data.get("flow_name"),
            tags=frozenset(str(t) for t in tags) if isinstance(tags, list) else frozenset(),
            deployment=frozenset(deployment),
            work_pool=data.get("work_pool"),
        )


def run_id_of(event: StoredEvent) -> str | None:
    """The flow run an event belongs to: its `flow_run_id`, or the run whose stream holds it."""
    value = event.data.get("flow_run_id")
    if isinstance(value, str) and value:
        return value
    if event.stream.startswith(_RUN_STREAM):
        return event.stream[len(_RUN_STREAM):]
    return None


def compile_patterns(patterns: Sequence[str]) -> TypePatterns:
    return TypePatterns.parse(list(patterns))


def _any(values: Sequence[str], candidate: str | None) -> bool:
    return candidate is not None and any(fnmatchcase(candidate, value) for value in values)


def resource_matches(match: Match, run: RunFacts | None) -> bool:
    """Whether the run passes every filter of `match` (an event without a run passes none)."""
    if not match.filters_runs:
        return True
    if run is None:
        return False
    if match.flow_name is not None and not _any(match.flow_name, run.flow_name):
        return False
    if match.tags is not None and not all(any(fnmatchcase(t, want) for t in run.tags) for want in match.tags):
        return False
    if match.deployment is not None and not any(_any(match.deployment, d) for d in run.deployment):
        return False
    return match.work_pool is None or _any(match.work_pool, run.work_pool)
