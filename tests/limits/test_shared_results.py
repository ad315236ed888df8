"""Results and the cache index in a shared result storage (`LEDGERFLOW_RESULTS_URL`): a cache
hit and a replay in another process with a home of its own find what the first stored, in a
shared local folder and on an S3 server (moto's, on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from ledgerflow.events import open_store
from ledgerflow.runtime.results import ResultStore
from ledgerflow.runtime.storage import FsspecFolder, LocalFolder, open_storage
from tests.api.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
N = 500  # the result's JSON is far above what travels inside its event


def _run(home: Path, store_url: str, *args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    environ.update(LEDGERFLOW_HOME=str(home), LEDGERFLOW_DATABASE_URL=store_url, PYTHONPATH=str(REPO), **env)
    done = subprocess.run([sys.executable, "-c", "from tests.limits.result_flows import main; main()", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _task_states(store_url: str, flow_run_id: str) -> list[str]:
    with open_store(store_url) as store:
        return [e.type for e in store.read_stream(f"flow-run-{flow_run_id}") if e.type.startswith("task-run.")
                and e.type != "task-run.created"]


def _real_runs(folder: Path) -> int:
    return len(list(folder.glob("ran-*")))


def shared_storage_is_used_across_processes(tmp_path: Path, store_url: str, **env: str) -> None:
    """Process A stores; B (another home) hits the cache; C replays A's failed run with B's
    reused result; D, with results in its own home, must run the task again."""
    marks = tmp_path / "marks"
    marks.mkdir()
    state, first = _run(tmp_path / "a", store_url, "run", str(marks), str(N), "fail", **env).split()
    assert state == "Failed" and _real_runs(marks) == 1
    state, second = _run(tmp_path / "b", store_url, "run", str(marks), str(N), **env).split()
    assert state == "Completed" and _task_states(store_url, second) == ["task-run.Cached"]
    replayed = _run(tmp_path / "c", store_url, "replay", first, **env)
    assert "Failed" in replayed  # the flow still fails after the task, but the task was reused:
    assert _real_runs(marks) == 1
    env_without = {k: v for k, v in env.items() if k != "LEDGERFLOW_RESULTS_URL"}
    state, alone = _run(tmp_path / "d", store_url, "run", str(marks), str(N), **env_without).split()
    assert _task_states(store_url, alone) == ["task-run.Running", "task-run.Completed"]
    assert _real_runs(marks) == 2
    with open_store(store_url) as store:
        reused = store.read_all(types=["task-run.Reused"])
    assert len(reused) == 1


def test_a_shared_local_folder_serves_cache_hits_and_replays_in_other_processes(tmp_path: Path, store_url: str) -> None:
    shared = tmp_path / "shared"
    shared_storage_is_used_across_processes(tmp_path, store_url, LEDGERFLOW_RESULTS_URL=shared.as_uri())
    assert len(list(shared.glob("*.json"))) == 1  # the one result file
    assert len(list((shared / "cache").glob("*.json"))) == 1  # and its cache record


@pytest.fixture
def s3_url() -> Iterator[tuple[str, dict[str, str]]]:
    """A bucket on moto's S3 server on loopback, and the environment that reaches it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    bucket = f"results-{uuid.uuid4().hex[:12]}"  # moto's state outlives one server in this process
    client.create_bucket(Bucket=bucket)
    try:
        yield f"s3://{bucket}/team", env
    finally:
        client.close()
        server.stop()


def test_an_s3_bucket_serves_cache_hits_and_replays_in_other_processes(
    tmp_path: Path, store_url: str, s3_url: tuple[str, dict[str, str]],
) -> None:
    url, env = s3_url
    shared_storage_is_used_across_processes(tmp_path, store_url, LEDGERFLOW_RESULTS_URL=url, **env)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=url.split("/")[2])["Contents"]]
    client.close()
    assert len([k for k in keys if k.startswith("team/cache/")]) == 1
    assert len([k for k in keys if not k.startswith("team/cache/")]) == 1


def test_storage_locations_pick_a_local_folder_or_fsspec(tmp_path: Path) -> None:
    assert isinstance(open_storage(tmp_path.as_uri()), LocalFolder)
    assert isinstance(open_storage(str(tmp_path)), LocalFolder)
    memory = open_storage("memory://ledgerflow-test/results")
    assert isinstance(memory, FsspecFolder)
    results = ResultStore("memory://ledgerflow-test/results")
    ref = results.persist(list(range(N)))
    results.close()
    assert ResultStore("memory://ledgerflow-test/results").load_ref(ref) == list(range(N))
    with pytest.raises(FileNotFoundError):
        memory.read("missing.json")
    with pytest.raises(TypeError, match="not in a local folder"):
        results.root
