"""Two `ledgerflow server start` processes on one PostgreSQL database work as one service:
feeds see each other's appends, keys and their revocation are shared, cancels race fairly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import open_store
from ledgerflow.projections.runner import engine_of
from tests.api.conftest import SseReader, free_port, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_servers(tmp_path: Path, postgres_schema_url: str) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(tmp_path), LEDGERFLOW_DATABASE_URL=postgres_schema_url, LEDGERFLOW_AUTH="on")
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.api", "server", "start", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]

    def up(url: str) -> bool:
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        for url in urls:
            wait_until(lambda url=url: up(url), timeout=60)  # type: ignore[misc]
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def test_servers_share_the_log_keys_and_runs(two_servers: list[str], postgres_schema_url: str) -> None:
    a, b = two_servers
    store = open_store(postgres_schema_url)
    try:
        keys = ApiKeys(engine_of(store))
        writer_key, writer = keys.create("worker", "write")
    finally:
        store.close()
    auth = {"authorization": f"Bearer {writer}"}

    feed = SseReader(b, params={"after": "0.0"}, headers=auth)
    created = {"flow_run_id": "r-1", "flow_name": "nightly", "run_name": "r-1"}
    scheduled = {"flow_run_id": "r-1", "state_type": "SCHEDULED", "state_name": "Scheduled"}
    body = {"appends": [{"stream": "flow-run-r-1", "events": [
        {"type": "flow-run.created", "data": created}, {"type": "flow-run.Scheduled", "data": scheduled},
    ]}]}
    assert httpx.post(a + "/api/events", json=body, headers=auth).status_code == 200
    assert [data["type"] for _, data in feed.take(2)] == ["flow-run.created", "flow-run.Scheduled"]
    feed.close()

    def listed(url: str) -> bool:
        items = httpx.get(url + "/api/flow-runs", headers=auth).json()["items"]
        return [r["id"] for r in items] == ["r-1"]

    wait_until(lambda: listed(a) and listed(b))

    codes: list[int] = []
    barrier = threading.Barrier(2)

    def cancel(url: str) -> None:
        barrier.wait()
        codes.append(httpx.post(url + "/api/flow-runs/r-1/cancel", headers=auth, timeout=15).status_code)

    threads = [threading.Thread(target=cancel, args=(url,)) for url in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409]

    store = open_store(postgres_schema_url)
    try:
        ApiKeys(engine_of(store)).revoke(writer_key.id)
    finally:
        store.close()
    assert httpx.get(a + "/api/events", headers=auth).status_code == 401
    assert httpx.get(b + "/api/events", headers=auth).status_code == 401
