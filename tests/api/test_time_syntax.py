"""The CLI and the API take the same times: `7d`, `12h`, `30m` ago or ISO-8601 (events/timesyntax.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ledgerflow.events.timesyntax import InvalidTime, parse_time
from ledgerflow.runtime import flow
from ledgerflow.runtime.testing import harness
from tests.api.test_runs import run_id_of

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)),
    (" 45s ", NOW - timedelta(seconds=45)),
    ("2026-04-01T08:00", datetime(2026, 4, 1, 8, 0, tzinfo=UTC)),
    ("2026-04-01T08:00Z", datetime(2026, 4, 1, 8, 0, tzinfo=UTC)),
    ("2026-04-01T10:00+02:00", datetime(2026, 4, 1, 8, 0, tzinfo=UTC)),
])
def test_durations_ago_and_iso_times_parse(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "7", "d7", "7 days", "-7d", "2026-13-01", "99999999999w"])
def test_anything_else_is_refused_with_the_accepted_syntax(text: str) -> None:
    with pytest.raises(InvalidTime, match="30m, 12h, 7d"):
        parse_time(text, NOW)


@flow
def timed() -> int:
    return 1


def test_the_api_takes_the_cli_syntax(make_client: object, store_url: str) -> None:
    client: TestClient = make_client()  # type: ignore[operator]
    with harness(store_url):
        timed()
    run_id = run_id_of(client, "timed")
    for since in ("7d", "12h", "30m", (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")):
        listed = client.get("/api/flow-runs", params={"since": since})
        assert listed.status_code == 200, listed.text
        assert [run["id"] for run in listed.json()["items"]] == [run_id]
        history = client.get("/api/flow-runs/history", params={"since": since})
        assert history.status_code == 200, history.text
        assert client.get("/api/analytics/flows", params={"since": since}).status_code == 200
        events = client.get("/api/events", params={"since": since, "resource": run_id})
        assert events.status_code == 200 and events.json()["events"], events.text
    assert client.get("/api/flow-runs", params={"until": "1h"}).json()["items"] == []
    assert client.get("/api/events", params={"until": "1h", "resource": run_id}).json()["events"] == []
    refused = client.get("/api/flow-runs", params={"since": "7 days"})
    assert refused.status_code == 422 and "30m, 12h, 7d" in refused.text
