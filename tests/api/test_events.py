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
    other = client.post("/api/events", json=append_body("s-2", "note.added")).json()["events"][0]
    visible(client, 5)
    skipped = client.get("/api/events", params={"after": rest["next_after"], "type": "job.*"}).json()
    assert skipped == {"events": [], "next_after": other["cursor"]}  # the next read starts past it
    stream = client.get("/api/events", params={"stream": "s-1", "after": first["events"][0]["cursor"]}).json()
    assert [e["type"] for e in stream["events"]] == ["note.added", "job.Failed"]
    last = client.get("/api/events", params={"last": 2}).json()
    assert [e["type"] for e in last["events"]] == ["job.Completed", "note.added"]


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


def _run_events(flow_run_id: str, task_run_id: str, occurred: str) -> dict[str, object]:
    """A flow run's stream: the flow run, one task run of it, and a log line of each."""
    def log(task: str | None) -> dict[str, object]:
        data = {"flow_run_id": flow_run_id, "level": 20, "level_name": "INFO", "logger": "t", "message": "m"}
        return {"type": "log.emitted", "data": data | ({"task_run_id": task} if task else {}), "occurred": occurred}

    created = {"flow_run_id": flow_run_id, "flow_name": "etl", "run_name": flow_run_id}
    task = {"task_run_id": task_run_id, "flow_run_id": flow_run_id, "task_key": "m.t", "task_name": "t",
            "run_name": "t-0", "occurrence": 0}
    events = [
        {"type": "flow-run.created", "data": created, "occurred": occurred},
        log(None),
        {"type": "task-run.created", "data": task, "occurred": occurred},
        log(task_run_id),
    ]
    return {"stream": f"flow-run-{flow_run_id}", "events": events}


def test_read_by_resource_flow_run_or_task_run(client: TestClient) -> None:
    when = "2024-05-01T12:00:00+00:00"
    body = {"appends": [_run_events("fr-a", "tr-a", when), _run_events("fr-b", "tr-b", when)]}
    assert client.post("/api/events", json=body).status_code == 200, body
    visible(client, 8)
    flow_run = client.get("/api/events", params={"resource": "fr-a"}).json()["events"]
    assert [(e["stream"], e["type"]) for e in flow_run] == [
        ("flow-run-fr-a", "flow-run.created"), ("flow-run-fr-a", "log.emitted"),
        ("flow-run-fr-a", "task-run.created"), ("flow-run-fr-a", "log.emitted"),
    ]
    task_run = client.get("/api/events", params={"resource": "tr-b"}).json()["events"]
    assert [(e["type"], e["data"]["task_run_id"]) for e in task_run] == [("task-run.created", "tr-b"), ("log.emitted", "tr-b")]
    typed = client.get("/api/events", params={"resource": "tr-b", "type": "log.*"}).json()["events"]
    assert [e["type"] for e in typed] == ["log.emitted"]
    assert client.get("/api/events", params={"resource": "nobody"}).json()["events"] == []


def test_filtered_pages_move_past_skipped_events(client: TestClient) -> None:
    when = "2024-05-01T12:00:00+00:00"
    body = {"appends": [_run_events("fr-a", "tr-a", when), _run_events("fr-b", "tr-b", when)]}
    client.post("/api/events", json=body)
    every = visible(client, 8)
    first = client.get("/api/events", params={"resource": "tr-a", "limit": 1}).json()
    assert [e["type"] for e in first["events"]] == ["task-run.created"]
    assert first["next_after"] == first["events"][0]["cursor"]
    second = client.get("/api/events", params={"resource": "tr-a", "after": first["next_after"]}).json()
    assert [e["type"] for e in second["events"]] == ["log.emitted"]
    # The rest of the log was examined and skipped: the next page starts after all of it.
    assert second["next_after"] == every[-1]["cursor"]
    again = client.get("/api/events", params={"resource": "tr-a", "after": second["next_after"]}).json()
    assert again == {"events": [], "next_after": every[-1]["cursor"]}


def test_read_by_time_window(client: TestClient) -> None:
    body = {"appends": [
        _run_events("fr-early", "tr-early", "2024-05-01T10:00:00+00:00"),
        _run_events("fr-mid", "tr-mid", "2024-05-01T12:00:00+02:00"),
        _run_events("fr-late", "tr-late", "2024-05-01T14:00:00+00:00"),
    ]}
    client.post("/api/events", json=body)
    visible(client, 12)

    def streams(**params: str) -> list[str]:
        return sorted({e["stream"] for e in client.get("/api/events", params=params).json()["events"]})

    # 12:00+02:00 is 10:00Z: `since` is inclusive, `until` exclusive.
    assert streams(since="2024-05-01T10:00:00Z") == ["flow-run-fr-early", "flow-run-fr-late", "flow-run-fr-mid"]
    assert streams(since="2024-05-01T10:00:01Z") == ["flow-run-fr-late"]
    assert streams(until="2024-05-01T14:00:00Z") == ["flow-run-fr-early", "flow-run-fr-mid"]
    assert streams(since="2024-05-01T09:00:01-01:00", until="2024-05-01T15:00:01+01:00") == ["flow-run-fr-late"]
    assert streams(since="2024-05-01T09:00:01-01:00", until="2024-05-01T15:00:00+01:00") == []
    page = client.get("/api/events", params={"since": "2024-05-01T13:00:00Z", "resource": "fr-late", "type": "log.*"})
    assert [e["data"].get("task_run_id") for e in page.json()["events"]] == [None, "tr-late"]


def test_bad_resource_and_time_filters_are_422(client: TestClient) -> None:
    bad = [
        ({"since": "7 days"}, "since"),  # the CLI's syntax: 7d, or a time (UTC unless it has an offset)
        ({"until": "yesterday"}, "until"),
        ({"since": "2024-05-01T10:00:00Z", "until": "2024-05-01T09:00:00Z"}, "before"),
        ({"resource": ""}, "resource"),
        ({"resource": "x" * 101}, "resource"),
        ({"last": "2", "since": "2024-05-01T10:00:00Z"}, "last"),
    ]
    for params, word in bad:
        reply = client.get("/api/events", params=params)
        assert reply.status_code == 422, (params, reply.text)
        assert word in reply.json()["detail"].lower(), (params, reply.text)
