"""The built-in runner executes due requested runs in child processes, a bounded number at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from ledgerflow.events import EventStore, StoredEvent, open_store
from ledgerflow.events.deployments import apply_deployment, request_deployment_run, spec_from
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import RunClaim, read_flow_run, request_flow_run
from ledgerflow.runtime.execute import claim_due_runs
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


def completed(store: EventStore, ids: list[str]) -> bool:
    return all((s := read_flow_run(store, i).state) is not None and s.name == "Completed" for i in ids)


Claim = Callable[[Sequence[RunClaim]], dict[str, StoredEvent]]


def launched_until_completed(store: EventStore, store_url: str, tmp_path: Path, ids: list[str], claim: Claim) -> RunLauncher:
    """A launcher (one child per run, claiming with `claim`) run until every run of `ids` completed."""
    launcher = RunLauncher(lambda n: still_scheduled(store, ids)[:n], ChildSettings(str(tmp_path / "home"), store_url),
                           concurrency=len(ids), claim=claim)
    launcher.start()
    try:
        wait_until(lambda: completed(store, ids), timeout=120)
    finally:
        launcher.stop()
    return launcher


def requested_adds(store: EventStore, count: int, due: datetime) -> list[str]:
    """`count` runs of the flow `add`, requested for `due`."""
    return [
        str(request_flow_run(store, flow_name="add", entrypoint="tests.runtime.sample_flows:add",
                             working_dir=str(REPO), parameters={"a": n}, scheduled_time=due).data["flow_run_id"])
        for n in range(count)
    ]


def test_runs_started_ahead_of_their_time_are_claimed_by_the_runner_for_their_processes(
    store_url: str, tmp_path: Path
) -> None:
    with open_store(store_url) as store:
        due = utcnow() + timedelta(seconds=3)
        ids = requested_adds(store, 4, due)
        launcher = launched_until_completed(store, store_url, tmp_path, ids, lambda claims: claim_due_runs(store, claims))
        assert launcher.claimed == 4
        for run_id in ids:
            events = read_flow_run(store, run_id).events
            assert [e.type for e in events].count("flow-run.Pending") == 1
            pending = next(e for e in events if e.type == "flow-run.Pending")
            running = next(e for e in events if e.type == "flow-run.Running")
            assert pending.recorded >= due
            # Claimed for the process that ran it, as that process would have claimed it itself.
            assert pending.data["executor"] == f"{running.data['host']}:{running.data['pid']}"
            assert pending.meta.actor == "executor" and pending.meta.correlation_id is not None


def test_runs_of_a_deployment_with_a_concurrency_limit_are_claimed_by_their_processes(
    store_url: str, tmp_path: Path
) -> None:
    with open_store(store_url) as store:
        apply_deployment(store, spec_from({"flow_name": "add", "name": "limited", "entrypoint": "tests.runtime.sample_flows:add",
                                           "working_dir": str(REPO), "concurrency_limit": 2, "parameters": {"a": 1}}))
        due = utcnow() + timedelta(seconds=2)
        ids = [str(request_deployment_run(store, "add/limited", scheduled_time=due).data["flow_run_id"])
               for _ in range(2)]
        launcher = launched_until_completed(store, store_url, tmp_path, ids, lambda claims: claim_due_runs(store, claims))
        assert launcher.claimed == 0  # each took its slot of the limit, then claimed its run itself


def test_runs_the_runner_fails_to_claim_are_claimed_by_their_processes(store_url: str, tmp_path: Path) -> None:
    def broken(claims: Sequence[RunClaim]) -> dict[str, StoredEvent]:
        raise RuntimeError("a bug in the claim")

    with open_store(store_url) as store:
        ids = requested_adds(store, 2, utcnow() + timedelta(seconds=2))
        launcher = launched_until_completed(store, store_url, tmp_path, ids, broken)
        assert launcher.claimed == 0
