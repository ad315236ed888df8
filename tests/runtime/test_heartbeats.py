"""A running flow run beats: its Running event records its process, `flow-run.heartbeat`
follows every interval while it runs, and none comes after its end."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ledgerflow import flow
from ledgerflow.events.liveness import HEARTBEAT, this_process
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.runtime import config


@flow
def napping(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def test_a_running_flow_beats_until_it_ends(tmp_path: Path, store_url: str) -> None:
    runtime = config.for_home(tmp_path, store_url, heartbeat_seconds=0.1)
    previous = config.install(runtime)
    try:
        assert napping(1.0) == "rested"
        assert runtime.store is not None
        [created] = runtime.store.read_all(types=["flow-run.created"])
        stream = flow_run_stream(created.data["flow_run_id"])
        time.sleep(0.3)  # a beat after the end would have been written by now
        events = [e for e in runtime.store.read_stream(stream) if e.type.startswith("flow-run.")]
    finally:
        config.install(previous)
        runtime.close()
    types = [e.type for e in events]
    assert types[:2] == ["flow-run.created", "flow-run.Running"] and types[-1] == "flow-run.Completed"
    assert set(types[2:-1]) == {HEARTBEAT} and len(types[2:-1]) >= 5
    running = events[1].data
    assert (running["host"], running["pid"], running["heartbeat_seconds"]) == (socket.gethostname(), os.getpid(), 0.1)
    assert running["process_started"] == this_process().started.isoformat()
