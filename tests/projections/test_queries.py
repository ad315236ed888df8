"""The query functions on real SQLite and PostgreSQL, over a log written in runtime shapes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

import pytest

from ledgerflow.events import EventStore
from ledgerflow.events.states import StateType
from ledgerflow.projections import queries
from ledgerflow.projections.errors import InvalidQuery, RunNotFound
from ledgerflow.projections.readmodel import ReadModel
from testdata.synthetic import SyntheticRun
from tests.projections.support import T0, wait_visible

SECOND = timedelta(seconds=1)


class World(NamedTuple):
    rm: ReadModel
    parent: SyntheticRun
    child: SyntheticRun
    replay: SyntheticRun
    extract: str
    load: str
    reused: str


def build_world(store: EventStore) -> World:
    parent = SyntheticRun("etl", T0, tags=["prod", "nightly"], deployment_id="dep-1", step=SECOND)
    parent.state("Running")
    extract = parent.task("extract")
    parent.task_state(extract, "Running")
    parent.log("debug line", level=10, task_id=extract)
    parent.log("extracted 3 rows", task_id=extract)
    parent.task_state(extract, "Completed")
    load = parent.task("load", upstream=[extract])
    parent.task_state(load, "Running")
    parent.log("load failed", level=40, task_id=load)
    parent.task_state(load, "Failed", error="disk full")
    report = parent.artifact("report", "# draft")
    parent.update_artifact(report, "# final")
    child = SyntheticRun("child", T0 + 5 * SECOND, parent_flow_run_id=parent.id, step=SECOND)
    child.state("Running")
    child.state("Completed")
    parent.state("Failed", error="load failed")
    replay = SyntheticRun("etl", T0 + timedelta(hours=2), replay_of=parent.id, step=SECOND)
    replay.state("Running")
    reused = replay.task("extract")
    replay.task_state(reused, "Reused", cached_from=extract)
    replay.state("Completed")
    for run in (parent, child, replay):
        wait_visible(store, store.append(run.stream, run.events))
    return World(ReadModel(store), parent, child, replay, extract, load, reused)


@pytest.fixture
def world(store: EventStore) -> World:
    return build_world(store)


def test_list_flow_runs_filters_sorts_and_pages(world: World) -> None:
    rm = world.rm
    assert [r.id for r in queries.list_flow_runs(rm).items] == [world.replay.id, world.child.id, world.parent.id]
    assert [r.id for r in queries.list_flow_runs(rm, sort="oldest").items] == [world.parent.id, world.child.id, world.replay.id]
    assert [r.id for r in queries.list_flow_runs(rm, flow_name="etl").items] == [world.replay.id, world.parent.id]
    assert [r.id for r in queries.list_flow_runs(rm, state="FAILED").items] == [world.parent.id]
    assert [r.id for r in queries.list_flow_runs(rm, state=StateType.COMPLETED).items] == [world.replay.id, world.child.id]
    assert [r.id for r in queries.list_flow_runs(rm, tags=["prod", "nightly"]).items] == [world.parent.id]
    assert queries.list_flow_runs(rm, tags=["prod", "other"]).items == []
    assert [r.id for r in queries.list_flow_runs(rm, deployment_id="dep-1").items] == [world.parent.id]
    window = queries.list_flow_runs(rm, since=T0 + 2 * SECOND, until=T0 + timedelta(hours=1))
    assert [r.id for r in window.items] == [world.child.id]

    first = queries.list_flow_runs(rm, limit=2)
    assert len(first.items) == 2 and first.next_cursor
    second = queries.list_flow_runs(rm, limit=2, cursor=first.next_cursor)
    assert [r.id for r in second.items] == [world.parent.id] and second.next_cursor is None


def test_a_run_has_its_task_runs_states_timings_and_errors(world: World) -> None:
    detail = queries.get_run(world.rm, world.parent.id)
    run = detail.flow_run
    assert (run.flow_name, run.state_name, run.error) == ("etl", "Failed", "ValueError: load failed")
    assert run.tags == ["prod", "nightly"] and run.deployment_id == "dep-1"
    assert run.start is not None and run.end is not None
    assert run.duration == (run.end - run.start).total_seconds() > 0
    assert [(t.task_name, t.state_name, t.upstream) for t in detail.task_runs] == [
        ("extract", "Completed", []), ("load", "Failed", [world.extract]),
    ]
    assert detail.task_runs[1].error == "ValueError: disk full"
    assert [s.state_name for s in detail.states if s.task_run_id is None] == ["Running", "Failed"]
    replay = queries.get_run(world.rm, world.replay.id)
    assert replay.flow_run.replay_of == world.parent.id
    assert replay.task_runs[0].cached_from == world.extract and replay.task_runs[0].state_name == "Reused"


def test_logs_filter_by_level_and_page_by_stream_position(world: World) -> None:
    everything = queries.run_logs(world.rm, world.parent.id)
    assert [line.message for line in everything.items] == ["debug line", "extracted 3 rows", "load failed"]
    assert [line.message for line in queries.run_logs(world.rm, world.parent.id, min_level=30).items] == ["load failed"]
    first = queries.run_logs(world.rm, world.parent.id, limit=1)
    rest = queries.run_logs(world.rm, world.parent.id, after=first.next_after)
    assert [line.message for line in first.items + rest.items] == [line.message for line in everything.items]
    only_load = queries.run_logs(world.rm, world.parent.id, task_run_id=world.load)
    assert [line.message for line in only_load.items] == ["load failed"]


def test_artifacts_fold_their_updates(world: World) -> None:
    (artifact,) = queries.run_artifacts(world.rm, world.parent.id)
    assert (artifact.key, artifact.data) == ("report", "# final")
    assert artifact.updated > artifact.created


def test_lineage_walks_upstream_downstream_subflows_replays_and_reuse(world: World) -> None:
    graph = queries.lineage(world.rm, world.parent.id, depth=3)
    edges = {(e.kind, e.source, e.target) for e in graph.edges}
    assert ("subflow", world.parent.id, world.child.id) in edges
    assert ("replay", world.parent.id, world.replay.id) in edges
    assert ("upstream", world.extract, world.load) in edges
    assert ("cached", world.extract, world.reused) in edges
    depths = {node.id: node.depth for node in graph.nodes}
    assert depths[world.parent.id] == 0 and depths[world.child.id] == 1 and depths[world.extract] == 1

    upstream = queries.lineage(world.rm, world.load, direction="upstream", depth=1)
    assert {node.id for node in upstream.nodes} == {world.load, world.extract}
    downstream = queries.lineage(world.rm, world.extract, direction="downstream", depth=1)
    assert {node.id for node in downstream.nodes} == {world.extract, world.load, world.reused}
    assert {node.id for node in queries.lineage(world.rm, world.parent.id, depth=0).nodes} == {world.parent.id}


def test_analytics_over_a_range(world: World) -> None:
    report = queries.analytics(world.rm, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))
    by_flow = {g.value: g for g in report.groups}
    etl = by_flow["etl"]
    assert (etl.runs, etl.completed, etl.failed, etl.crashed) == (2, 1, 1, 0)
    assert etl.success_rate == 0.5 and etl.max is not None and etl.p50 is not None
    tasks = {g.value: g for g in queries.analytics(world.rm, since=T0 - timedelta(days=1), dimension="task").groups}
    assert (tasks["extract"].completed, tasks["load"].failed) == (2, 1)
    hourly = queries.analytics(world.rm, since=T0, until=T0 + timedelta(hours=1), grain="hour", value="etl")
    assert [(g.value, g.runs) for g in hourly.groups] == [("etl", 1)]
    tagged = queries.analytics(world.rm, since=T0 - timedelta(days=1), dimension="tag", value="prod")
    assert tagged.groups[0].runs == 1


def test_time_travel_by_cursor_and_by_time(world: World) -> None:
    events = world.rm.store.read_stream(world.parent.stream)
    running = next(e for e in events if e.type == "task-run.Running")
    snapshot = queries.run_as_of(world.rm, world.parent.id, cursor=running.cursor)
    assert snapshot.flow_run is not None and snapshot.flow_run.state_name == "Running"
    assert [(t.task_name, t.state_name) for t in snapshot.task_runs] == [("extract", "Running")]
    assert snapshot.events_folded == events.index(running) + 1
    by_time = queries.run_as_of(world.rm, world.parent.id, at=running.occurred)
    assert by_time.task_runs == snapshot.task_runs
    end = queries.run_as_of(world.rm, world.parent.id, at=T0 + timedelta(days=1))
    assert end.flow_run == queries.get_run(world.rm, world.parent.id).flow_run


def test_queries_see_appends_made_after_the_read_model_opened(world: World) -> None:
    late = SyntheticRun("late", T0 + timedelta(hours=5))
    wait_visible(world.rm.store, world.rm.store.append(late.stream, late.events))
    assert queries.list_flow_runs(world.rm, limit=1).items[0].id == late.id


def test_unknown_runs_and_bad_arguments_raise_typed_errors(world: World) -> None:
    rm = world.rm
    call: Callable[[], object]
    for call in (
        lambda: queries.get_run(rm, "nope"),
        lambda: queries.run_logs(rm, "nope"),
        lambda: queries.run_artifacts(rm, "nope"),
        lambda: queries.lineage(rm, "nope"),
        lambda: queries.run_as_of(rm, "nope", cursor="0.1"),
    ):
        with pytest.raises(RunNotFound, match="nope"):
            call()
    for call in (
        lambda: queries.list_flow_runs(rm, limit=0),
        lambda: queries.list_flow_runs(rm, state="Exploded"),
        lambda: queries.list_flow_runs(rm, cursor="garbage"),
        lambda: queries.list_flow_runs(rm, since=T0.replace(tzinfo=None)),
        lambda: queries.analytics(rm, since=T0, until=T0),
        lambda: queries.lineage(rm, world.parent.id, depth=-1),
        lambda: queries.run_as_of(rm, world.parent.id),
        lambda: queries.run_as_of(rm, world.parent.id, cursor="not-a-cursor"),
        lambda: queries.run_logs(rm, world.parent.id, limit=0),
    ):
        with pytest.raises(InvalidQuery):
            call()
