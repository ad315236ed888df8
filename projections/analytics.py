"""The analytics projection: run counts, outcomes and duration histograms per period.

For every flow run (by flow name, deployment and each tag) and every task run (by task name)
it keeps, per hour and per day of the run's creation: runs, completed, failed, crashed,
cancelled, the largest duration, and a duration histogram.

Why histograms: percentiles do not add up across periods or batches, raw durations grow
without bound. Log-spaced buckets (each 10% wider than the last, from 1 ms) add and subtract
exactly, so the fold stays incremental and any range is answered by summing its periods'
buckets; a percentile is then off by at most ~5% (1 ms for the shortest runs). The maximum
is exact, but is never lowered
(a run that leaves a terminal state by a retry keeps its earlier duration in `max`).

A run's *contribution* (which buckets it counts in, with which outcome and duration) is a
function of its tracked row; each event subtracts the run's old contribution and adds its new
one, so a retry that turns Failed into Completed moves the run between the counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

from ledgerflow.events import StoredEvent
from ledgerflow.events.payloads import creates_task_run
from ledgerflow.events.states import STATE_NAMES, TERMINAL, StateType
from ledgerflow.events.tables import UtcDateTime
from ledgerflow.projections.base import Row, Rows

__all__ = [
    "GRAINS",
    "AnalyticsProjection",
    "bucket_value",
    "fold_analytics",
    "histogram_index",
    "merge_histograms",
    "percentile",
    "period_start",
]

GRAINS = ("hour", "day")
_OUTCOMES = {
    StateType.COMPLETED: "completed",
    StateType.FAILED: "failed",
    StateType.CRASHED: "crashed",
    StateType.CANCELLED: "cancelled",
}
_STATES = {
    name: (state_type is StateType.RUNNING, _OUTCOMES[state_type] if state_type in TERMINAL else None)
    for name, state_type in STATE_NAMES.items()
}
"""A state's name: whether it is Running, and the outcome it counts as (None unless terminal)."""
_BASE = 0.001
_GROWTH = 1.1
_LOG_GROWTH = math.log(_GROWTH)
_SEP = "\x1f"


def histogram_index(seconds: float) -> int:
    """0 for durations up to 1 ms, then one index per 10% step."""
    if seconds <= _BASE:
        return 0
    return 1 + int(math.log(seconds / _BASE) / _LOG_GROWTH)


def bucket_value(index: int) -> float:
    """The duration a histogram bucket stands for (its geometric middle)."""
    if index == 0:
        return _BASE
    return float(_BASE * _GROWTH ** (index - 0.5))


def merge_histograms(histograms: Iterable[Mapping[str, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[int(index)] = merged.get(int(index), 0) + count
    return merged


def percentile(histogram: Mapping[int, int], pct: float, exact_max: float | None) -> float | None:
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(total * pct / 100))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            value = bucket_value(index)
            return min(value, exact_max) if exact_max is not None else value
    return exact_max


def period_start(when: datetime, grain: str) -> datetime:
    if grain == "hour":
        return when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _bucket_key(dimension: str, value: str, grain: str, period: datetime) -> str:
    return _SEP.join((dimension, value, grain, period.isoformat()))


BucketKeys = list[tuple[str, str, str, str, datetime]]


def _bucket_keys(track: Row) -> BucketKeys:
    dims = track["dims"]
    return [] if dims is None else _keys_of(dims, track["created"])


def _keys_of(dims: str, created: datetime) -> BucketKeys:
    return _hour_keys(dims, period_start(created, "hour"))


@lru_cache(maxsize=65_536)
def _hour_keys(dims: str, hour: datetime) -> BucketKeys:
    # Cached: every run of the same dimensions created in the same hour has the same buckets.
    periods = [(grain, period_start(hour, grain)) for grain in GRAINS]
    return [
        (_bucket_key(dimension, value, grain, period), dimension, value, grain, period)
        for dimension, value in orjson.loads(dims)
        for grain, period in periods
    ]


def _new_track(run_id: str, kind: str, occurred: datetime) -> Row:
    return {"key": run_id, "kind": kind, "dims": None, "created": occurred, "start": None,
            "outcome": None, "duration": None}


def _new_bucket(key: str, dimension: str, value: str, grain: str, period: datetime) -> Row:
    return {"key": key, "dimension": dimension, "value": value, "grain": grain, "period": period,
            "runs": 0, "completed": 0, "failed": 0, "crashed": 0, "cancelled": 0,
            "hist": "{}", "max_duration": None}


def _dims(kind: str, data: Mapping[str, Any]) -> list[list[str]]:
    if kind == "task":
        return [["task", data["task_name"]]] if data.get("task_name") else []
    dims = [["flow", data["flow_name"]]]
    if data.get("deployment_id"):
        dims.append(["deployment", data["deployment_id"]])
    dims.extend(["tag", tag] for tag in dict.fromkeys(data.get("tags", ())))
    return dims


def fold_analytics(rows: Rows, events: Sequence[StoredEvent]) -> Rows:
    """Pure: the tracked runs and period buckets `events` change, given the stored `rows`."""
    tracked_in, buckets_in = rows.get("tracked", {}), rows.get("buckets", {})
    tracked: dict[str, Row] = {}
    buckets: dict[str, Row] = {}
    histograms: dict[str, dict[str, int]] = {}

    def bucket_of(key: str, dimension: str, value: str, grain: str, period: datetime) -> Row:
        bucket = buckets.get(key)
        if bucket is None:
            stored = buckets_in.get(key)
            bucket = buckets[key] = (
                dict(stored) if stored else _new_bucket(key, dimension, value, grain, period)
            )
            histograms[key] = orjson.loads(bucket["hist"])
        return bucket

    def count(key: str, bucket: Row, outcome: str | None, duration: float | None, sign: int) -> None:
        if outcome is None:
            return
        bucket[outcome] += sign
        if duration is None:
            return
        histogram = histograms[key]
        index = str(histogram_index(duration))
        total = histogram.get(index, 0) + sign
        if total:
            histogram[index] = total
        else:
            histogram.pop(index, None)
        if sign > 0 and (bucket["max_duration"] is None or duration > bucket["max_duration"]):
            bucket["max_duration"] = duration

    def contribute(contribution: tuple[Any, ...], sign: int) -> None:
        dims, created, outcome, duration = contribution
        if dims is None:
            return
        for key, dimension, value, grain, period in _keys_of(dims, created):
            bucket = bucket_of(key, dimension, value, grain, period)
            bucket["runs"] += sign
            count(key, bucket, outcome, duration, sign)

    def move(before: tuple[Any, ...], outcome: str | None, duration: float | None) -> None:
        """`contribute(before, -1)` then `contribute(after, +1)` for a run whose buckets stay."""
        dims, created, old_outcome, old_duration = before
        if dims is None:
            return
        for key, dimension, value, grain, period in _keys_of(dims, created):
            bucket = bucket_of(key, dimension, value, grain, period)
            count(key, bucket, old_outcome, old_duration, -1)
            count(key, bucket, outcome, duration, +1)

    for event in events:
        kind, _, name = event.type.partition(".")
        state = None
        if name != "created":
            state = _STATES.get(name)
            if state is None:
                continue
        data = event.data
        run_id = data.get("task_run_id" if kind == "task-run" else "flow_run_id")
        if run_id is None:
            continue
        track = tracked.get(run_id)
        if track is None:
            stored = tracked_in.get(run_id)
            track = tracked[run_id] = (
                dict(stored) if stored else _new_track(run_id, kind.split("-")[0], event.occurred)
            )
        before = (track["dims"], track["created"], track["outcome"], track["duration"])
        if state is None or creates_task_run(event.type, data):  # a reused task run's one event creates it too
            track["dims"] = orjson.dumps(_dims(track["kind"], data)).decode()
            track["created"] = event.occurred
            after = (track["dims"], track["created"], track["outcome"], track["duration"])
            if after != before:
                contribute(before, -1)
                contribute(after, +1)
            if state is None:
                continue
            before = after
        running, outcome = state
        start = track["start"]
        if running and start is None:
            track["start"] = start = event.occurred
        duration = (event.occurred - start).total_seconds() if outcome and start else None
        track["outcome"] = outcome
        track["duration"] = duration
        if outcome != before[2] or duration != before[3]:  # most states (Pending, Running) change no counter
            move(before, outcome, duration)

    for key, histogram in histograms.items():
        buckets[key]["hist"] = orjson.dumps(histogram).decode()
    return {"tracked": tracked, "buckets": buckets}


def _event_keys(events: Sequence[StoredEvent]) -> tuple[set[str], set[str]]:
    """The runs `events` are about, and the buckets their `created` events name."""
    runs: set[str] = set()
    wanted: set[str] = set()
    for event in events:
        kind, _, name = event.type.partition(".")
        run_id = event.data.get("task_run_id" if kind == "task-run" else "flow_run_id")
        if run_id is None or (name != "created" and name not in _STATES):  # heartbeats, logs: no counter moves
            continue
        runs.add(run_id)
        if name == "created" or creates_task_run(event.type, event.data):
            dims = orjson.dumps(_dims(kind.split("-")[0], event.data)).decode()
            wanted.update(key for key, *_ in _keys_of(dims, event.occurred))
    return runs, wanted


class AnalyticsProjection:
    name = "analytics"
    version = 1
    types = ("flow-run.*", "task-run.*")
    table_names = ("tracked", "buckets")

    def define_tables(self, metadata: MetaData, prefix: str) -> dict[str, Table]:
        tracked = Table(
            f"{prefix}tracked", metadata,
            Column("key", String(64), primary_key=True),
            Column("kind", String(10), nullable=False),
            Column("dims", Text()),
            Column("created", UtcDateTime(), nullable=False),
            Column("start", UtcDateTime()),
            Column("outcome", String(20)),
            Column("duration", Float()),
        )
        buckets = Table(
            f"{prefix}buckets", metadata,
            Column("key", String(600), primary_key=True),
            Column("dimension", String(20), nullable=False),
            Column("value", String(400), nullable=False),
            Column("grain", String(10), nullable=False),
            Column("period", UtcDateTime(), nullable=False),
            Column("runs", Integer(), nullable=False),
            Column("completed", Integer(), nullable=False),
            Column("failed", Integer(), nullable=False),
            Column("crashed", Integer(), nullable=False),
            Column("cancelled", Integer(), nullable=False),
            Column("hist", Text(), nullable=False),
            Column("max_duration", Float()),
        )
        Index(f"{prefix}buckets_range", buckets.c.dimension, buckets.c.grain, buckets.c.period)
        return {"tracked": tracked, "buckets": buckets}

    def __init__(self) -> None:
        self._last: tuple[Sequence[StoredEvent], tuple[set[str], set[str]]] | None = None

    def keys(self, events: Sequence[StoredEvent], rows: Rows) -> dict[str, set[str]]:
        # The runner asks again for the same batch once tracked rows are loaded: what the
        # events themselves name is worked out once per batch.
        last = self._last
        if last is None or last[0] is not events:
            last = self._last = (events, _event_keys(events))
        runs, wanted = last[1]
        buckets = set(wanted)
        for track in rows.get("tracked", {}).values():
            buckets.update(key for key, *_ in _bucket_keys(track))
        return {"tracked": runs, "buckets": buckets}

    def fold(self, rows: Rows, events: Sequence[StoredEvent]) -> Rows:
        return fold_analytics(rows, events)
