"""API fixtures: the app over each database, in-process (TestClient) or on a real uvicorn
server on a free loopback port (for feeds, the remote sink and CLI commands)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import ApiSettings
from ledgerflow.events import Settings, load_settings


LOCAL = "http://localhost"
"""TestClient's base URL: the server answers only Host names on its allow-list ("testserver" is not)."""


def local_client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=LOCAL)


def api_settings(**api: object) -> ApiSettings:
    """ApiSettings for a test server: the built-in runner and the scheduler only where a test
    turns them on (the runner would race the test's own executors for the runs it requests,
    the late-run marker would write into runs a test counts the events of)."""
    return ApiSettings(**{"run_runner": False, "run_scheduler": False, **api})  # type: ignore[arg-type]


def settings_for(home: Path, store_url: str) -> Settings:
    return load_settings({"LEDGERFLOW_HOME": str(home), "LEDGERFLOW_DATABASE_URL": store_url})


@pytest.fixture
def make_client(tmp_path: Path, store_url: str) -> Iterator[Callable[..., TestClient]]:
    """TestClients over create_app on the test's database; keyword arguments are ApiSettings."""
    opened: list[TestClient] = []

    def make(**api: object) -> TestClient:
        client = local_client(create_app(settings_for(tmp_path, store_url), api_settings(**api)))
        opened.append(client.__enter__())
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(run_projections=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Run `app` under uvicorn in a thread (on a free port unless given); yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            thread.join(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def make_server(tmp_path: Path, store_url: str) -> Iterator[Callable[..., str]]:
    stack: list[AbstractContextManager[str]] = []

    def make(**api: object) -> str:
        port = free_port()  # the server's built-in runner hands its URL to the runs it starts
        context = serving(create_app(settings_for(tmp_path, store_url), api_settings(port=port, **api)), port)
        stack.append(context)
        return context.__enter__()

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def server_url(make_server: Callable[..., str]) -> str:
    return make_server()


def append_body(stream: str, *types: str, expected: object = "any", ids: list[str] | None = None) -> dict[str, object]:
    events = [{"type": t, "data": {"n": i}} for i, t in enumerate(types)]
    if ids:
        for event, event_id in zip(events, ids, strict=True):
            event["id"] = event_id
    return {"appends": [{"stream": stream, "events": events, "expected_version": expected}]}


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait on a condition (never on time): poll `check` until it holds or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        threading.Event().wait(0.02)


class SseReader:
    """A blocking SSE client over httpx: `take(n)` returns the next n events' (id, data)."""

    def __init__(self, url: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> None:
        self._http = httpx.Client(timeout=httpx.Timeout(15.0))
        self._context = self._http.stream("GET", url + "/api/events/feed", params=params, headers=headers or {})
        self.response = self._context.__enter__()
        self._lines = self.response.iter_lines()

    def take(self, n: int) -> list[tuple[str, dict[str, object]]]:
        found: list[tuple[str, dict[str, object]]] = []
        event_id, data = "", ""
        while len(found) < n:
            line = next(self._lines)
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                found.append((event_id, orjson.loads(data)))
                event_id, data = "", ""
        return found

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self._http.close()


def visible(client: TestClient, count: int, **params: str) -> list[dict[str, object]]:
    """`GET /api/events` once `count` events are visible to readers.

    On PostgreSQL the feed only shows events below the oldest running transaction of the
    cluster (events/postgres.py), so a read right after an append may not see it yet."""
    found: list[dict[str, object]] = []

    def enough() -> bool:
        nonlocal found
        found = client.get("/api/events", params={"limit": 1000, **params}).json()["events"]
        return len(found) >= count

    wait_until(enough)
    assert len(found) == count, found
    return found


def nothing_else_written(client: TestClient, count: int = 0) -> None:
    """Exactly `count` events exist: append a sentinel, wait for it, and count what is before it."""
    client.post("/api/events", json=append_body("sentinel-1", "sentinel"))
    events = visible(client, count + 1)
    assert events[-1]["type"] == "sentinel"
