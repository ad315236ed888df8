"""The pure folds: runs, lineage and analytics, with no database."""

from __future__ import annotations

import random
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.events import StoredEvent
from ledgerflow.projections.analytics import (
    AnalyticsProjection,
    bucket_value,
    fold_analytics,
    histogram_index,
    merge_histograms,
    percentile,
)
from ledgerflow.projections.base import Projection, Row, Rows
from ledgerflow.projections.lineage import LineageProjection, fold_lineage
from ledgerflow.projections.run_views import RunsProjection, fold_runs
from testdata.synthetic import SyntheticRun, random_run
from tests.projections.support import T0, as_stored, interleave


def test_a_flow_run_row_follows_its_states() -> None:
    run = SyntheticRun("etl", T0, tags=["prod"], deployment_id="dep-1", step=timedelta(seconds=1))
    run.state("Pending")
    run.state("Running")
    run.state("Completed", after=timedelta(seconds=30))
    row = fold_runs({}, as_stored(run.events))["flow_runs"][run.id]
    assert row["flow_name"] == "etl" and row["deployment_id"] == "dep-1"
    assert orjson.loads(row["tags"]) == ["prod"]
    assert (row["state_type"], row["state_name"]) == ("COMPLETED", "Completed")
    assert row["created"] == T0 + timedelta(seconds=1)
    assert row["start"] == T0 + timedelta(seconds=3)
    assert row["end"] == T0 + timedelta(seconds=33)
    assert row["duration"] == 30.0
    assert row["attempts"] == 1


def test_retries_count_attempts_keep_the_last_error_and_time_from_the_first_start() -> None:
    run = SyntheticRun("etl", T0, step=timedelta(seconds=1))
    task = run.task("load")
    run.task_state(task, "Running")
    run.task_state(task, "AwaitingRetry", error="flaky")
    row = fold_runs({}, as_stored(run.events))["task_runs"][task]
    assert row["state_type"] == "SCHEDULED" and row["end"] is None
    run.task_state(task, "Running", attempt=2)
    run.task_state(task, "Completed", attempt=2)
    row = fold_runs({}, as_stored(run.events))["task_runs"][task]
    assert row["attempts"] == 2
    assert row["error"] == "ValueError: flaky"
    assert row["duration"] == 3.0
    assert row["flow_run_id"] == run.id


def test_a_state_before_created_starts_the_row_and_created_fills_it_in() -> None:
    run = SyntheticRun("etl", T0)
    run.events.clear()
    run.state("Scheduled")
    scheduled = fold_runs({}, as_stored(run.events))["flow_runs"][run.id]
    assert scheduled["flow_name"] is None and scheduled["state_name"] == "Scheduled"
    created = SyntheticRun("etl", T0 + timedelta(seconds=5), run_id=run.id)
    row = fold_runs({"flow_runs": {run.id: scheduled}}, as_stored(created.events))["flow_runs"][run.id]
    assert row["flow_name"] == "etl" and row["state_name"] == "Scheduled"


def test_fold_never_mutates_the_rows_it_is_given() -> None:
    run = SyntheticRun("etl", T0)
    rows = fold_runs({}, as_stored(run.events))
    frozen = orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS)
    run.events.clear()
    run.state("Running")
    changed = fold_runs(rows, as_stored(run.events))
    assert orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS) == frozen
    assert changed["flow_runs"][run.id]["state_name"] == "Running"


def test_cached_results_point_at_their_origin_in_runs_and_lineage() -> None:
    run = SyntheticRun("etl", T0)
    first = run.task("extract")
    second = run.task("load", upstream=[first])
    run.task_state(second, "Cached", cached_from="origin-task")
    events = as_stored(run.events)
    assert fold_runs({}, events)["task_runs"][second]["cached_from"] == "origin-task"
    edges = {(e["kind"], e["source"], e["target"]) for e in fold_lineage({}, events)["edges"].values()}
    assert edges == {("upstream", first, second), ("cached", "origin-task", second)}


def test_a_reused_task_run_is_one_event_that_creates_it_in_runs_lineage_and_analytics() -> None:
    run = SyntheticRun("etl", T0)
    first = run.task("extract")
    second = run.reused_task("load", "origin-task", upstream=[first])
    events = as_stored(run.events)
    row = fold_runs({}, events)["task_runs"][second]
    assert (row["task_name"], row["run_name"], row["state_name"], row["cached_from"]) == ("load", "load-0", "Reused", "origin-task")
    assert orjson.loads(row["upstream"]) == [first] and row["created"] == events[-1].occurred
    lineage = fold_lineage({}, events)
    assert lineage["nodes"][second]["name"] == "load-0"
    edges = {(e["kind"], e["source"], e["target"]) for e in lineage["edges"].values()}
    assert edges == {("upstream", first, second), ("cached", "origin-task", second)}
    assert _buckets(fold_analytics({}, events), "task")["load"]["completed"] == 1


def test_lineage_links_subflows_and_replays() -> None:
    parent = SyntheticRun("parent", T0)
    stand_in = parent.task("child")
    child = SyntheticRun("child", T0, parent_flow_run_id=parent.id, parent_task_run_id=stand_in)
    replay = SyntheticRun("parent", T0, replay_of=parent.id)
    rows = fold_lineage({}, as_stored(parent.events + child.events + replay.events))
    edges = {(e["kind"], e["source"], e["target"]) for e in rows["edges"].values()}
    assert edges == {
        ("subflow", parent.id, child.id), ("subflow", stand_in, child.id), ("replay", parent.id, replay.id),
    }
    assert rows["nodes"][child.id]["kind"] == "flow_run"


def _buckets(rows: Rows, dimension: str, grain: str = "day") -> dict[str, Row]:
    return {b["value"]: b for b in rows["buckets"].values() if b["dimension"] == dimension and b["grain"] == grain}


def test_analytics_counts_outcomes_per_flow_tag_deployment_and_task() -> None:
    ok = SyntheticRun("etl", T0, tags=["prod"], deployment_id="dep-1", step=timedelta(seconds=1))
    ok.state("Running")
    task = ok.task("load")
    ok.task_state(task, "Running")
    ok.task_state(task, "Completed")
    ok.state("Completed")
    bad = SyntheticRun("etl", T0, tags=["prod", "prod"], step=timedelta(seconds=2))
    bad.state("Running")
    bad.state("Crashed")
    rows = fold_analytics({}, as_stored(ok.events + bad.events))
    flow = _buckets(rows, "flow")["etl"]
    assert (flow["runs"], flow["completed"], flow["crashed"], flow["failed"]) == (2, 1, 1, 0)
    assert flow["max_duration"] == 4.0
    assert _buckets(rows, "tag")["prod"]["runs"] == 2  # a repeated tag counts once
    assert _buckets(rows, "deployment")["dep-1"]["runs"] == 1
    assert _buckets(rows, "task")["load"]["completed"] == 1
    assert _buckets(rows, "flow", "hour")["etl"]["period"] == T0.replace(minute=0)


def test_a_retry_out_of_a_terminal_state_moves_the_run_between_counters() -> None:
    run = SyntheticRun("etl", T0, step=timedelta(seconds=1))
    run.state("Running")
    run.state("Failed", error="boom")
    first = fold_analytics({}, as_stored(run.events))
    assert _buckets(first, "flow")["etl"]["failed"] == 1
    run.events.clear()
    run.state("AwaitingRetry")
    run.state("Running", attempt=2)
    run.state("Completed", attempt=2)
    second = fold_analytics(first, as_stored(run.events, start=10))
    flow = _buckets(second, "flow")["etl"]
    assert (flow["runs"], flow["failed"], flow["completed"]) == (1, 0, 1)
    assert merge_histograms([orjson.loads(flow["hist"])]) == {histogram_index(4.0): 1}  # from the first start


@given(st.lists(st.floats(min_value=0.0005, max_value=86_400), min_size=1, max_size=200))
def test_histogram_percentiles_are_within_five_percent_or_a_millisecond(durations: list[float]) -> None:
    histogram: dict[int, int] = {}
    for duration in durations:
        histogram[histogram_index(duration)] = histogram.get(histogram_index(duration), 0) + 1
    ordered = sorted(durations)
    for pct in (50, 95):
        exact = ordered[max(1, -(-len(ordered) * pct // 100)) - 1]
        estimate = percentile(histogram, pct, max(durations))
        assert estimate is not None
        assert abs(estimate - exact) <= max(0.05 * exact, 0.001) + 1e-9  # 5%, or 1 ms below 20 ms
    assert bucket_value(0) == 0.001


def _fold_in_batches(projection: Projection, events: list[StoredEvent], splits: list[int]) -> Rows:
    """What the runner does, with dicts for tables: load the keys asked for, fold, store."""
    tables: Rows = {name: {} for name in projection.table_names}
    start = 0
    for size in splits + [len(events)]:
        batch = events[start : start + size]
        start += size
        if not batch:
            continue
        rows: Rows = {name: {} for name in tables}
        for _ in range(4):
            wanted = projection.keys(batch, rows)
            for name, keys in wanted.items():
                rows[name].update((k, tables[name][k]) for k in keys if k in tables[name])
        for name, changed in projection.fold(rows, batch).items():
            tables[name].update(changed)
    return tables


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), splits=st.lists(st.integers(1, 40), max_size=20))
def test_folding_in_any_batch_split_equals_folding_once(seed: int, splits: list[int]) -> None:
    rng = random.Random(seed)
    runs = [random_run(rng, T0 + timedelta(minutes=37 * n), tasks=rng.randint(0, 5)) for n in range(4)]
    events = as_stored(interleave(rng, [run.events for run in runs]))
    for projection in (RunsProjection(), LineageProjection(), AnalyticsProjection()):
        once = _fold_in_batches(projection, events, [])
        assert _fold_in_batches(projection, events, splits) == once
