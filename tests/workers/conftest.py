"""A live server (uvicorn in a thread, auth on) over the test's database, a worker key, and
real `ledgerflow worker start` processes against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from ledgerflow.api.http.app import create_app
from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import EventStore, open_store
from ledgerflow.events.deployments import Deployment, apply_deployment, run_request
from ledgerflow.events.model import new_id, utcnow
from ledgerflow.projections.runner import engine_of
from ledgerflow.runtime.deployments import build_spec
from tests.api.conftest import api_settings, serving, settings_for

LEDGERFLOW = str(Path(sys.executable).with_name("ledgerflow"))
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    url: str
    store: EventStore
    worker_key: str
    write_key: str
    read_key: str
    home: Path

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {key or self.write_key}"}, timeout=60)

    def env(self, key: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
        env.update(LEDGERFLOW_HOME=str(self.home), LEDGERFLOW_API_URL=self.url,
                   LEDGERFLOW_API_KEY=key or self.worker_key, COLUMNS="200")
        return env

    def deploy(self, flow: str, name: str, pool: str, queue: str | None = None, **parameters: object) -> Deployment:
        spec = build_spec(f"tests/workers/flows.py:{flow}", name=name, working_dir=REPO, parameters=parameters,
                          work_pool=pool, work_queue=queue)
        return apply_deployment(self.store, spec).deployment

    def request_runs(self, deployment: Deployment, count: int) -> list[str]:
        """`count` runs due now, requested in a few multi-stream appends."""
        ids = [new_id() for _ in range(count)]
        for start in range(0, count, 100):
            self.store.append_streams([
                run_request(deployment, deployment.spec.parameters, flow_run_id=run_id, scheduled_time=utcnow(), actor="test")
                for run_id in ids[start:start + 100]
            ])
        return [str(run_id) for run_id in ids]


@pytest.fixture
def live(tmp_path: Path, postgres_schema_url: str) -> Iterator[Live]:
    settings = settings_for(tmp_path, postgres_schema_url)
    store = open_store(postgres_schema_url)
    keys = ApiKeys(engine_of(store))
    secrets = {scope: keys.create(f"test {scope}", scope)[1] for scope in ("worker", "write", "read")}
    try:
        with serving(create_app(settings, api_settings(auth=True))) as url:
            yield Live(url, store, secrets["worker"], secrets["write"], secrets["read"], tmp_path)
    finally:
        store.close()


@pytest.fixture
def start_worker(live: Live, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """`ledgerflow worker start ARGS...` processes (keyword arguments: extra environment
    variables), stopped (SIGTERM) at the end of the test."""
    started: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def start(*args: str, key: str | None = None, **environment: str) -> subprocess.Popen[str]:
        logs.append(open(tmp_path / f"worker-{len(started)}.log", "w"))  # noqa: SIM115 - closed below
        process = subprocess.Popen([LEDGERFLOW, "worker", "start", *args], env=live.env(key) | environment, cwd=tmp_path,
                                   stdout=logs[-1], stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for log in logs:
        log.close()
