"""The built-in runner executes due requested runs in child processes, a bounded number at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ledgerflow.events import EventStore, open_store
from ledgerflow.events.runs import read_flow_run, request_flow_run
from ledgerflow.runtime.runner import ChildSettings, RunLauncher
from tests.api.conftest import wait_until
from tests.runtime.test_execute import REPO


def still_scheduled(store: EventStore, ids: list[str]) -> Sequence[str]:
    """A stand-in for the server's projection query: the requested runs not yet claimed."""
    states = {run_id: read_flow_run(store, run_id).state for run_id in ids}
    return [run_id for run_id, state in states.items() if state is not None and state.name == "Scheduled"]


def test_due_runs_are_executed_at_most_n_at_once(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        ids = [
            str(request_flow_run(store, flow_name="sequential", entrypoint="tests.runtime.sample_flows:sequential",
                                 working_dir=str(REPO),
                                 parameters={"folder": str(tmp_path), "steps": 1, "seconds": 0.4}).data["flow_run_id"])
            for _ in range(5)
        ]
        launcher = RunLauncher(lambda n: still_scheduled(store, ids)[:n], ChildSettings(str(tmp_path / "home"), store_url),
                               concurrency=2)
        launcher.start()
        try:
            def all_done() -> bool:
                return all((s := read_flow_run(store, i).state) is not None and s.name == "Completed" for i in ids)

            wait_until(all_done, timeout=120)
        finally:
            launcher.stop()
        assert launcher.launched == 5
        spans = []
        for run_id in ids:
            events = read_flow_run(store, run_id).events
            start = next(e.recorded for e in events if e.type == "flow-run.Running")
            end = next(e.recorded for e in events if e.type == "flow-run.Completed")
            spans.append((start, end))
        overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
        assert overlapping <= 2
