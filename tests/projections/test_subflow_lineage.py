"""Lineage of a real flow calling a subflow: the parent flow run and the stand-in task run that
ran the subflow both lead to the child flow run, in the query and in the CLI tree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rich.console import Console

from ledgerflow.api.cli.runs import lineage_tree
from ledgerflow.events import EventStore
from ledgerflow.events.payloads import TaskRunCreated, parse_data
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.runtime import flow, task
from ledgerflow.runtime.testing import harness


@task
def add(x: int, y: int) -> int:
    return x + y


@flow
def child(x: int) -> int:
    incremented: int = add(x, 1)
    return incremented


@flow
def parent() -> int:
    summed: int = add(child(1), 10)
    return summed


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store


def test_a_subflow_hangs_under_its_parent_flow_and_the_task_run_that_ran_it(runs: EventStore) -> None:
    state = parent(return_state=True)
    assert state.result() == 12
    parent_id = str(state.flow_run_id)
    (stand_in,) = [
        parse_data(e) for e in runs.read_stream(f"flow-run-{parent_id}")
        if e.type == "task-run.created" and e.data.get("child_flow_run_id")
    ]
    assert isinstance(stand_in, TaskRunCreated) and stand_in.child_flow_run_id is not None
    child_id = stand_in.child_flow_run_id

    rm = ReadModel(runs)
    graph = queries.lineage(rm, parent_id, depth=3)
    edges = {(e.kind, e.source, e.target) for e in graph.edges}
    assert ("subflow", parent_id, child_id) in edges
    assert ("subflow", stand_in.task_run_id, child_id) in edges

    upstream = queries.lineage(rm, child_id, direction="upstream", depth=1)
    callers = {(e.kind, e.source) for e in upstream.edges if e.target == child_id}
    assert callers == {("subflow", parent_id), ("subflow", stand_in.task_run_id)}

    console = Console(width=300, record=True, color_system=None)
    console.print(lineage_tree(graph))
    lines = console.export_text().splitlines()
    task_line = next(n for n, line in enumerate(lines) if stand_in.task_run_id in line)
    child_line = next(n for n, line in enumerate(lines) if child_id in line)
    assert child_line == task_line + 1
    indent = len(lines[task_line]) - len(lines[task_line].lstrip("│ "))
    assert len(lines[child_line]) - len(lines[child_line].lstrip("│ ")) > indent
    assert "subflow" in lines[child_line]
