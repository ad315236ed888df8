"""`ledgerflow worker start --runs-per-process N`: one run process executes up to N runs, one
after another, each finding the process as it started (working directory, environment,
import path); a flow file changed between runs is loaded again; a cancelled run's process is
not used again (test_workers.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ledgerflow.events.deployments import apply_deployment
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.runtime.deployments import build_spec
from tests.api.conftest import wait_until
from tests.workers.conftest import REPO, Live
from tests.workers.test_workers import StartWorker, _create_pool, _state

pytestmark = pytest.mark.postgres

VERSIONED = '''
import json
import os
from pathlib import Path

from ledgerflow import flow
from ledgerflow.runtime import flow_run


@flow
def versioned(folder: str) -> None:
    (Path(folder) / str(flow_run.id)).write_text(json.dumps([os.getpid(), {version}]))
'''


def _completed(live: Live, *run_ids: str) -> bool:
    return all(_state(live, run_id) == "Completed" for run_id in run_ids)


def test_a_run_process_executes_up_to_n_runs_each_finding_it_as_it_started(
    live: Live, start_worker: StartWorker, tmp_path: Path
) -> None:
    seen_in = tmp_path / "seen"
    seen_in.mkdir()
    _create_pool(live, "reuse")
    run_ids = live.request_runs(live.deploy("meddle", "reuse", "reuse", folder=str(seen_in)), 5)
    start_worker("--pool", "reuse", "--limit", "1", "--runs-per-process", "3", "--name", "r1")
    wait_until(lambda: _completed(live, *run_ids), timeout=300)

    seen = [json.loads((seen_in / run_id).read_text()) for run_id in run_ids]
    assert sorted(Counter(s["pid"] for s in seen).values()) == [2, 3]  # 3 runs in one process, then 2 in a new one
    assert [s["meddled"] for s in seen] == [None] * 5  # the variable a run before set is gone
    assert {s["cwd"] for s in seen} == {str(REPO)}  # the run's working directory, not the "/" a run before left
    assert len({tuple(s["path"]) for s in seen}) == 1 and not any("/nowhere" in p for s in seen for p in s["path"])
    for run_id in run_ids:
        assert [e.type for e in live.store.read_stream(flow_run_stream(run_id))].count("flow-run.Pending") == 1


def test_a_flow_file_changed_between_runs_is_loaded_again(live: Live, start_worker: StartWorker, tmp_path: Path) -> None:
    code, out = tmp_path / "code", tmp_path / "out"
    code.mkdir()
    out.mkdir()
    flow_file = code / "versioned.py"
    flow_file.write_text(VERSIONED.format(version=1))
    _create_pool(live, "edit")
    spec = build_spec("versioned.py:versioned", name="edit", working_dir=code, parameters={"folder": str(out)},
                      work_pool="edit")
    deployment = apply_deployment(live.store, spec).deployment
    start_worker("--pool", "edit", "--limit", "1", "--runs-per-process", "10", "--name", "e1")

    [first] = live.request_runs(deployment, 1)
    wait_until(lambda: _completed(live, first), timeout=300)
    flow_file.write_text(VERSIONED.format(version=22))  # another size too: a change within one mtime tick shows
    [second] = live.request_runs(deployment, 1)
    wait_until(lambda: _completed(live, second), timeout=300)

    (pid, version), (same_pid, new_version) = (json.loads((out / run).read_text()) for run in (first, second))
    assert same_pid == pid  # the same process ran both
    assert (version, new_version) == (1, 22)
