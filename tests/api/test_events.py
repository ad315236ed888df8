"""`/api/events`: batch ingest (idempotent, versioned, all or nothing) and paged reads."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.api.conftest import append_body, nothing_else_written, visible


def test_ingest_returns_stored_events_in_order(client: TestClient) -> None:
    body = {
        "appends": [
            {"stream": "a-1", "events": [{"type": "x.one"}, {"type": "x.two", "data": {"k": [1, 2]}}]},
            {"stream": "b-1", "events": [{"type": "y.one"}], "expected_version": "no stream"},
        ]
    }
    reply = client.post("/api/events", json=body)
    assert reply.status_code == 200, reply.text
    events = reply.json()["events"]
    assert [(e["stream"], e["type"], e["stream_position"]) for e in events] == [
        ("a-1", "x.one", 1), ("a-1", "x.two", 2), ("b-1", "y.one", 1),
    ]
    assert events[1]["data"] == {"k": [1, 2]}
    assert [e["cursor"] for e in visible(client, 3)] == [e["cursor"] for e in events]


def test_ingest_is_idempotent_by_event_id(client: TestClient) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    first = client.post("/api/events", json=append_body("s-1", "a", "b", ids=ids)).json()["events"]
    again = client.post("/api/events", json=append_body("s-1", "a", "b", ids=ids)).json()["events"]
    assert again == first
    nothing_else_written(client, 2)


def test_wrong_expected_version_is_409_and_writes_nothing(client: TestClient) -> None:
    client.post("/api/events", json=append_body("s-1", "a"))
    body = {
        "appends": [
            {"stream": "other-1", "events": [{"type": "fresh"}]},
            {"stream": "s-1", "events": [{"type": "b"}], "expected_version": 0},
        ]
    }
    reply = client.post("/api/events", json=body)
    assert reply.status_code == 409
    assert reply.json()["stream"] == "s-1" and reply.json()["actual"] == 1
    assert "version 1" in reply.json()["detail"]
    nothing_else_written(client, 1)


def test_bad_input_is_4xx_with_a_message_and_writes_nothing(client: TestClient) -> None:
    bad = [
        (b"{not json", 422, "json"),
        (b'{"appends": []}', 422, "appends"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": "ok"}], "extra": 1}]}', 422, "extra"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": 5}]}]}', 422, "type"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": "bad type!"}]}]}', 422, "type"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": "ok", "id": "nope"}]}]}', 422, "id"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": "ok"}], "expected_version": -1}]}', 422, "expected"),
        (b'{"appends": [{"stream": "s-1", "events": [{"type": "ok", "occurred": "2024-01-01T00:00:00"}]}]}', 422, "timezone"),
        (b'{"appends": [{"stream": "bad stream name", "events": [{"type": "ok"}]}]}', 422, "stream"),
    ]
    for raw, status, word in bad:
        reply = client.post("/api/events", content=raw, headers={"content-type": "application/json"})
        assert reply.status_code == status, (raw, reply.text)
        assert word in reply.json()["detail"].lower(), (raw, reply.text)
    nothing_else_written(client)


def test_oversized_body_is_413(make_client: object) -> None:
    small = make_client(run_projections=False, max_body_bytes=1000)  # type: ignore[operator]
    big = append_body("s-1", *["t"] * 100)
    reply = small.post("/api/events", json=big)
    assert reply.status_code == 413
    assert "larger than" in reply.json()["detail"]
    nothing_else_written(small)


def test_read_pages_by_cursor_with_filters(client: TestClient) -> None:
    client.post("/api/events", json=append_body("s-1", "job.Running", "note.added", "job.Failed"))
    client.post("/api/events", json=append_body("s-2", "job.Completed"))
    visible(client, 4)
    first = client.get("/api/events", params={"type": "job.*", "limit": 2}).json()
    assert [e["type"] for e in first["events"]] == ["job.Running", "job.Failed"]
    rest = client.get("/api/events", params={"type": "job.*", "after": first["next_after"]}).json()
    assert [e["type"] for e in rest["events"]] == ["job.Completed"]
    empty = client.get("/api/events", params={"after": rest["next_after"], "type": "job.*"}).json()
    assert empty == {"events": [], "next_after": rest["next_after"]}
    stream = client.get("/api/events", params={"stream": "s-1", "after": first["events"][0]["cursor"]}).json()
    assert [e["type"] for e in stream["events"]] == ["note.added", "job.Failed"]
    last = client.get("/api/events", params={"last": 2}).json()
    assert [e["type"] for e in last["events"]] == ["job.Failed", "job.Completed"]


def test_bad_cursor_and_limits_are_4xx(client: TestClient) -> None:
    assert client.get("/api/events", params={"after": "nope"}).status_code == 400
    assert "cursor" in client.get("/api/events", params={"after": "nope"}).json()["detail"]
    assert client.get("/api/events", params={"limit": 0}).status_code == 422
    assert client.get("/api/events", params={"last": 3, "after": "0.0"}).status_code == 422
    assert client.get("/api/events/feed", params={"after": "x.y"}).status_code == 400


def test_runtime_events_must_fit_their_payload_contract(client: TestClient) -> None:
    body = {"appends": [{"stream": "flow-run-r1", "events": [{"type": "task-run.Failed", "data": {"flow_run_id": "r1"}}]}]}
    reply = client.post("/api/events", json=body)
    assert reply.status_code == 422
    assert "task-run.Failed" in reply.json()["detail"]
    nothing_else_written(client)
