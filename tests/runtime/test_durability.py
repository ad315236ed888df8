"""A flow call that returned has committed everything; a killed run says it crashed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledgerflow.events import open_store

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    # Ctrl-C as in a terminal, even when the test runner was started with SIGINT ignored (a
    # background job of a shell): an ignored signal is inherited, and Python then has no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ledgerflow.runtime import flow, get_run_context, task

    @task
    def step(i):
        return i

    @flow
    def burst(n: int):
        for i in range(n):
            step(i)
        if os.environ.get("HANG"):
            print(get_run_context().flow_run.id, flush=True)
            time.sleep(60)

    print(burst(int(sys.argv[1]), return_state=True).flow_run_id, flush=True)
    os._exit(0)  # leave at once: no atexit, no cleanup
    """
)


def _run(store_url: str, tmp_path: Path, *args: str, hang: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "LEDGERFLOW_HOME": str(tmp_path), "LEDGERFLOW_DATABASE_URL": store_url}
    if hang:
        env["HANG"] = "1"
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_every_task_run_of_a_returned_flow_is_in_the_log(store_url: str, tmp_path: Path) -> None:
    process = _run(store_url, tmp_path, "5000")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    store = open_store(store_url)
    try:
        # The run's own stream: read_all on PostgreSQL trails transactions still open anywhere
        # on the server (its gap-free horizon), and other tests share the server.
        types = [e.type for e in store.read_stream(f"flow-run-{stdout.strip()}")]
        assert types.count("task-run.Completed") == types.count("task-run.created") == 5000
        assert [t for t in types if t.startswith("flow-run.")] == [
            "flow-run.created", "flow-run.Running", "flow-run.Completed"
        ]
    finally:
        store.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_signalled_run_ends_crashed(store_url: str, tmp_path: Path, sig: signal.Signals) -> None:
    process = _run(store_url, tmp_path, "10", hang=True)
    assert process.stdout is not None
    flow_run_id = process.stdout.readline().strip()
    assert flow_run_id
    # Let the child reach its sleep: a signal landing between the print and the sleep's syscall
    # is only seen by Python when the 60-second sleep ends (CPython checks signals between
    # bytecodes), which would time this test out without saying anything about ledgerflow.
    time.sleep(0.3)
    process.send_signal(sig)
    process.communicate(timeout=60)
    assert process.returncode != 0
    store = open_store(store_url)
    try:
        types = [e.type for e in store.read_stream(f"flow-run-{flow_run_id}")]
        assert [t for t in types if t.startswith("flow-run.")] == [
            "flow-run.created", "flow-run.Running", "flow-run.Crashed"
        ]
        assert types.count("task-run.Completed") == 10
    finally:
        store.close()
