"""`ledgerflow worker start --runs-per-process N`: one run process executes up to N runs, one
after another, each finding the process as it started (working directory, environment,
import path, none of the flow code a run before imported: another deployment's module of the
same name, or a changed file, is loaded anew); a process whose flow took SIGTERM for itself is
not used again, nor one that ran a cancelled run (test_workers.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ledgerflow.events.deployments import apply_deployment
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.runtime.deployments import build_spec_isolated
from tests.api.conftest import wait_until
from tests.workers.conftest import REPO, Live
from tests.workers.test_workers import StartWorker, _create_pool, _state

pytestmark = pytest.mark.postgres

FLOWS = '''
import json
import os
from pathlib import Path

from helper import VALUE
from ledgerflow import flow
from ledgerflow.runtime import flow_run


@flow
def etl(folder: str) -> None:
    (Path(folder) / str(flow_run.id)).write_text(json.dumps([os.getpid(), VALUE]))
'''


def _completed(live: Live, *run_ids: str) -> bool:
    return all(_state(live, run_id) == "Completed" for run_id in run_ids)


def _one_at_a_time(live: Live, start_worker: StartWorker, flow: str, folder: Path, count: int, per_process: int) -> list[str]:
    """`count` runs of `flow` (writing into `folder`), on a pool of their own, which one worker
    executes one at a time, up to `per_process` in one run process."""
    folder.mkdir()
    pool = flow.replace("_", "-")
    _create_pool(live, pool)
    run_ids = live.request_runs(live.deploy(flow, pool, pool, folder=str(folder)), count)
    start_worker("--pool", pool, "--limit", "1", "--runs-per-process", str(per_process), "--name", f"{pool}-1")
    return run_ids


def test_a_run_process_executes_up_to_n_runs_each_finding_it_as_it_started(
    live: Live, start_worker: StartWorker, tmp_path: Path
) -> None:
    seen_in = tmp_path / "seen"
    run_ids = _one_at_a_time(live, start_worker, "meddle", seen_in, count=5, per_process=3)
    wait_until(lambda: _completed(live, *run_ids), timeout=300)

    seen = [json.loads((seen_in / run_id).read_text()) for run_id in run_ids]
    assert sorted(Counter(s["pid"] for s in seen).values()) == [2, 3]  # 3 runs in one process, then 2 in a new one
    assert [s["meddled"] for s in seen] == [None] * 5  # the variable a run before set is gone
    assert {s["cwd"] for s in seen} == {str(REPO)}  # the run's working directory, not the "/" a run before left
    assert len({tuple(s["path"]) for s in seen}) == 1 and not any("/nowhere" in p for s in seen for p in s["path"])
    for run_id in run_ids:
        assert [e.type for e in live.store.read_stream(flow_run_stream(run_id))].count("flow-run.Pending") == 1


def test_each_run_loads_its_own_deployments_code_afresh(live: Live, start_worker: StartWorker, tmp_path: Path) -> None:
    """Two deployments whose module entrypoints are both `flows:etl`, in folders of their own,
    each importing its own `helper`; one process runs them in turn, and a helper changed on
    disk between runs is what the next run uses."""
    out = tmp_path / "out"
    out.mkdir()
    deployments = {}
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "flows.py").write_text(FLOWS)
        (folder / "helper.py").write_text(f"VALUE = {name + '1'!r}\n")
        spec = build_spec_isolated("flows:etl", name=name, working_dir=str(folder), parameters={"folder": str(out)},
                                   work_pool="mixed")
        deployments[name] = apply_deployment(live.store, spec).deployment
    _create_pool(live, "mixed")
    start_worker("--pool", "mixed", "--limit", "1", "--runs-per-process", "10", "--name", "m1")

    def run(name: str) -> tuple[int, str]:
        [run_id] = live.request_runs(deployments[name], 1)
        wait_until(lambda: _completed(live, run_id), timeout=300)
        pid, value = json.loads((out / run_id).read_text())
        return pid, value

    first = run("a")
    second = run("b")
    (tmp_path / "a" / "helper.py").write_text("VALUE = 'a2, changed'\n")
    third = run("a")
    assert [value for _, value in (first, second, third)] == ["a1", "b1", "a2, changed"]
    assert first[0] == second[0] == third[0]  # one process ran all three


def test_a_process_whose_flow_took_sigterm_is_not_used_again(
    live: Live, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Its runs all complete: none is handed to a process on its way out (and marked crashed)."""
    pids = tmp_path / "pids"
    run_ids = _one_at_a_time(live, start_worker, "takes_sigterm", pids, count=3, per_process=5)
    wait_until(lambda: all(_state(live, run_id) in ("Completed", "Crashed", "Failed") for run_id in run_ids), timeout=300)

    assert [_state(live, run_id) for run_id in run_ids] == ["Completed"] * 3
    assert len({(pids / run_id).read_text() for run_id in run_ids}) == 3  # a fresh process each time
