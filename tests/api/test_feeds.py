"""Live feeds on a real server: SSE and WebSocket, filters, resuming without loss or repeats,
and clients behind the in-memory window reading from the log."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from websockets.sync.client import connect

from tests.api.conftest import SseReader, append_body


def post(url: str, body: dict[str, object]) -> list[dict[str, object]]:
    reply = httpx.post(url + "/api/events", json=body, timeout=15)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["events"])


def test_sse_delivers_live_and_resumes_from_last_event_id(server_url: str) -> None:
    reader = SseReader(server_url)
    assert reader.response.headers["content-type"].startswith("text/event-stream")
    first = post(server_url, append_body("s-1", *[f"e.{i}" for i in range(5)]))
    got = reader.take(3)
    assert [data["type"] for _, data in got] == ["e.0", "e.1", "e.2"]
    assert [event_id for event_id, _ in got] == [e["cursor"] for e in first[:3]]
    reader.close()
    post(server_url, append_body("s-1", *[f"e.{i}" for i in range(5, 9)]))
    resumed = SseReader(server_url, headers={"last-event-id": got[-1][0]})
    assert [data["type"] for _, data in resumed.take(6)] == [f"e.{i}" for i in range(3, 9)]
    post(server_url, append_body("s-2", "sentinel"))
    assert [data["type"] for _, data in resumed.take(1)] == ["sentinel"]  # nothing repeated before it
    resumed.close()


def test_sse_filters_by_type_flow_run_and_flow_name(server_url: str) -> None:
    by_name = SseReader(server_url, params={"flow_name": "etl", "after": "0.0"})
    by_run = SseReader(server_url, params={"flow_run_id": "r2", "type": "task-run.*", "after": "0.0"})
    for run, flow in (("r1", "etl"), ("r2", "report"), ("r3", "etl")):
        post(server_url, {"appends": [{"stream": f"flow-run-{run}", "events": [
            {"type": "flow-run.created", "data": {"flow_run_id": run, "flow_name": flow, "run_name": run}},
            {"type": "task-run.created", "data": task_created(run)},
            {"type": "log.emitted", "data": {"flow_run_id": run, "level": 20, "level_name": "INFO", "logger": "x", "message": "hi"}},
        ]}]})
    named = by_name.take(6)
    assert {data["stream"] for _, data in named} == {"flow-run-r1", "flow-run-r3"}
    assert [data["type"] for _, data in by_run.take(1)] == ["task-run.created"]
    running = {"flow_run_id": "r2", "task_run_id": "t-r2", "state_type": "RUNNING", "state_name": "Running"}
    post(server_url, {"appends": [{"stream": "flow-run-r2", "events": [{"type": "task-run.Running", "data": running}]}]})
    assert [data["type"] for _, data in by_run.take(1)] == ["task-run.Running"]
    by_name.close()
    by_run.close()


def task_created(run: str) -> dict[str, object]:
    return {"task_run_id": f"t-{run}", "flow_run_id": run, "task_key": "m.t", "task_name": "t", "run_name": "t-0", "occurrence": 0}


def test_websocket_feed_filters_and_resumes(server_url: str) -> None:
    written = post(server_url, append_body("s-1", "a.one", "b.one", "a.two"))
    ws_url = server_url.replace("http", "ws") + "/api/events/ws"
    with connect(f"{ws_url}?type=a.*&after={written[0]['cursor']}") as ws:
        import orjson

        assert orjson.loads(ws.recv(timeout=10))["type"] == "a.two"
        post(server_url, append_body("s-1", "b.two", "a.three"))
        assert orjson.loads(ws.recv(timeout=10))["type"] == "a.three"


def test_clients_behind_the_window_read_the_log(make_server: Callable[..., str]) -> None:
    url = make_server(feed_window=8)
    live = SseReader(url)
    for batch in range(5):
        post(url, append_body(f"s-{batch}", *[f"e.{batch}.{i}" for i in range(30)]))
    expected = [f"e.{b}.{i}" for b in range(5) for i in range(30)]
    assert [data["type"] for _, data in live.take(150)] == expected
    late = SseReader(url, params={"after": "0.0"})
    assert [data["type"] for _, data in late.take(150)] == expected
    live.close()
    late.close()


def test_websocket_refuses_without_a_key_when_auth_is_on(make_server: Callable[..., str]) -> None:
    url = make_server(auth=True)
    from websockets.exceptions import InvalidStatus

    try:
        with connect(url.replace("http", "ws") + "/api/events/ws") as ws:
            ws.recv(timeout=5)
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
    else:
        raise AssertionError("the server accepted a WebSocket without a key")
