"""The deployments projection: folding in any batch split equals folding once, and equals the
deployment's own fold of its stream; the runner keeps it like the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.events import EventMeta, StoredEvent
from ledgerflow.events.deployments import fold_deployment, spec_from
from ledgerflow.events.model import trusted
from ledgerflow.projections.base import Rows
from ledgerflow.projections.deployments import deployment_of, fold_deployments

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SCHEDULES = [
    [{"kind": "interval", "interval": 60}],
    [{"kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Paris"}],
    [{"kind": "interval", "interval": 60}, {"kind": "rrule", "rrule": "FREQ=DAILY", "active": False}],
    [],
]


def definition(name: str, variant: int) -> dict[str, Any]:
    return spec_from({"flow_name": "etl", "name": name, "entrypoint": "f.py:etl",
                      "schedules": SCHEDULES[variant % len(SCHEDULES)], "concurrency_limit": variant + 1}).as_data()


def history(steps: list[tuple[int, str, int]]) -> list[StoredEvent]:
    """Events of a few deployments' streams, in log order, from (deployment, action, variant)."""
    events: list[StoredEvent] = []
    versions: dict[int, int] = {}
    for index, (which, action, variant) in enumerate(steps):
        name = f"d{which}"
        spec = spec_from(definition(name, 0))
        ident = str(spec.id)
        version = versions.get(which, 0)
        kind = "created" if version == 0 else action
        data: dict[str, Any] = {"deployment_id": ident, "name": spec.full_name}
        if kind in ("created", "updated"):
            data["definition"] = definition(name, variant)
        versions[which] = version + 1
        events.append(trusted(StoredEvent, {
            "id": uuid4(), "type": f"deployment.{kind}", "stream": f"deployment-{ident}",
            "occurred": T0 + timedelta(seconds=index), "data": data, "meta": EventMeta(), "position": index + 1,
            "stream_position": version + 1, "recorded": T0 + timedelta(seconds=index), "hash": "", "cursor": f"0.{index + 1}",
        }))
    return events


STEPS = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["updated", "paused", "resumed", "deleted", "created"]),
              st.integers(0, 3)),
    min_size=1, max_size=25,
)


def fold_in(batches: list[list[StoredEvent]]) -> Rows:
    rows: Rows = {"deployments": {}}
    for batch in batches:
        rows["deployments"].update(fold_deployments(rows, batch)["deployments"])
    return rows


@given(STEPS, st.lists(st.integers(1, 5), min_size=1, max_size=10))
def test_folding_in_any_batch_split_equals_folding_once(steps: list[tuple[int, str, int]], cuts: list[int]) -> None:
    events = history(steps)
    batches, start = [], 0
    for size in cuts * 10:
        if start >= len(events):
            break
        batches.append(events[start:start + size])
        start += size
    if start < len(events):
        batches.append(events[start:])
    once = fold_in([events])
    assert fold_in(batches) == once
    for key, row in once["deployments"].items():
        own = fold_deployment(e for e in events if e.data["deployment_id"] == key)
        assert own is not None and deployment_of(row) == own
