"""The dashboard's server side on both databases (TestClient): the pages, what they render
without JavaScript, what they leave out when keys are required, the history endpoint the
runs page's chart reads, and the assets."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from ledgerflow.events import EventStore
from ledgerflow.projections import queries
from ledgerflow.projections.errors import RunNotFound
from ledgerflow.projections.readmodel import ReadModel
from testdata.synthetic import SyntheticRun
from tests.api.conftest import wait_until


def add_runs(store: EventStore, count: int, clock: datetime, *, flow: str = "etl", final: str = "Completed",
             tags: list[str] | None = None, step: timedelta = timedelta(minutes=1)) -> list[SyntheticRun]:
    """`count` finished runs created `step` apart from `clock` on, folded into the projections."""
    runs = []
    for n in range(count):
        run = SyntheticRun(flow, clock + n * step, tags=tags)
        run.state("Pending")
        run.state("Running")
        task = run.task("extract")
        run.task_state(task, "Running")
        run.task_state(task, "Completed" if final == "Completed" else "Failed", error=None if final == "Completed" else "boom")
        run.state(final, error=None if final == "Completed" else "a task failed")
        runs.append(run)
    store.append_streams([run.append() for run in runs])
    settle(store, runs[-1].id)
    return runs


def settle(store: EventStore, run_id: str) -> None:
    """Fold the log into the projections until run `run_id` is in them (on PostgreSQL an
    append becomes visible to readers only once older transactions have ended)."""
    model = ReadModel(store)

    def folded() -> bool:
        model.refresh()
        try:
            queries.get_run(model, run_id)
        except RunNotFound:
            return False
        return True

    wait_until(folded)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)"', html)


def page_data(html: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_the_runs_page_renders_the_newest_fifty_and_pages_on(client: TestClient, store: EventStore) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    runs = add_runs(store, 60, start)
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    shown = rows(response.text)
    assert shown == [run.id for run in reversed(runs)][:50]
    older = re.search(r'id="older-link" href="([^"]+)"', response.text)
    assert older is not None
    rest = client.get(older.group(1).replace("&amp;", "&"))
    assert rows(rest.text) == [run.id for run in reversed(runs)][50:]
    assert 'id="older-link"' not in rest.text and 'id="newest-link"' in rest.text
    data = page_data(response.text)
    assert data["rendered"] is True and data["auth"] is False
    assert isinstance(data["after"], str) and data["after"] != "0.0"  # where the live feed starts
    assert "Completed" in response.text and 'class="badge state-completed"' in response.text


def test_filters_are_applied_server_side(client: TestClient, store: EventStore) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    etl = add_runs(store, 3, start, tags=["prod"])
    failed = add_runs(store, 2, start + timedelta(minutes=10), flow="report", final="Failed")
    assert set(rows(client.get("/", params={"flow": "report"}).text)) == {run.id for run in failed}
    assert set(rows(client.get("/", params={"state": "FAILED"}).text)) == {run.id for run in failed}
    assert set(rows(client.get("/", params={"tag": "prod", "flow": "", "state": ""}).text)) == {run.id for run in etl}
    assert rows(client.get("/", params={"until": (start - timedelta(days=1)).isoformat()}).text) == []
    assert len(rows(client.get("/", params={"range": "1h"}).text)) == 0
    assert len(rows(client.get("/", params={"range": "24h"}).text)) == 5
    refused = client.get("/", params={"state": "Sleeping"})
    assert refused.status_code == 422 and "unknown state" in refused.text and 'role="alert"' in refused.text
    assert client.get("/", params={"since": "yesterday"}).status_code == 422


def test_text_from_the_log_is_escaped(client: TestClient, store: EventStore) -> None:
    run = SyntheticRun("<script>alert(1)</script>", datetime.now(UTC), tags=['"><img src=x onerror=alert(1)>'])
    run.state("Running")
    store.append_streams([run.append()])
    settle(store, run.id)
    html = client.get("/").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    detail = client.get(f"/runs/{run.id}").text
    assert "<script>alert(1)" not in detail
    data = page_data(detail)  # the JSON the page's script reads back is intact
    assert data["detail"]["flow_run"]["flow_name"] == "<script>alert(1)</script>"  # type: ignore[index]


def test_pages_send_a_strict_content_security_policy(client: TestClient) -> None:
    """The stylesheet and the theme script are in the page (a cold browser paints on the HTML
    alone); the CSP names exactly those two blocks by hash, so no other inline code runs."""
    for path in ("/", "/analytics", "/events", "/automations", "/deployments"):
        response = client.get(path)
        assert response.status_code == 200, path
        policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'self'"
        assert response.headers["x-content-type-options"] == "nosniff"
        head = response.text.split("</head>")[0]
        assert 'rel="stylesheet"' not in head and "<script src" not in head, path
        for tag, directive in (("style", "style-src"), ("script", "script-src")):
            (body,) = re.findall(f"<{tag}>(.*?)</{tag}>", response.text, re.S)  # the only inline one
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert policy[directive] == f"'self' 'sha256-{digest}'", (path, directive)
        assert "--s-completed" in head and "ledgerflow.theme" in head
        assert re.search(r'<script type="module" src="/static/js/\w+\.js"></script>', response.text)


def test_the_run_page_renders_the_run_and_404s_an_unknown_one(client: TestClient, store: EventStore) -> None:
    (run,) = add_runs(store, 1, datetime.now(UTC) - timedelta(minutes=5), final="Failed")
    response = client.get(f"/runs/{run.id}")
    assert response.status_code == 200
    html = response.text
    assert f"{run.id}" in html and "Replay from failure" in html and "Cancel run" in html
    assert html.count('class="badge state-failed"') >= 2  # the header and the Failed state row
    assert "a task failed" in html
    data = page_data(html)
    assert data["run_id"] == run.id
    assert [t["task_name"] for t in data["detail"]["task_runs"]] == ["extract"]  # type: ignore[index]
    missing = client.get("/runs/no-such-run")
    assert missing.status_code == 404 and "no flow run with id no-such-run" in missing.text


def test_a_run_the_projections_have_not_folded_yet_gets_the_page(client: TestClient, store: EventStore) -> None:
    run = SyntheticRun("etl", datetime.now(UTC))
    store.append_streams([run.append()])  # the client's server runs no projections
    response = client.get(f"/runs/{run.id}")
    assert response.status_code == 200 and page_data(response.text)["detail"] is None  # its script waits for it


def test_with_keys_required_pages_carry_no_data(make_client: Callable[..., TestClient], store: EventStore) -> None:
    client = make_client(auth=True, run_projections=False)
    (run,) = add_runs(store, 1, datetime.now(UTC) - timedelta(minutes=5))
    runs_page = client.get("/")
    assert runs_page.status_code == 200 and 'data-auth="on"' in runs_page.text
    assert rows(runs_page.text) == [] and page_data(runs_page.text)["rendered"] is False
    assert 'id="key-dialog"' in runs_page.text and 'id="key-button"' in runs_page.text
    run_page = client.get(f"/runs/{run.id}")
    assert run_page.status_code == 200 and page_data(run_page.text)["detail"] is None
    assert run.id in run_page.text and "extract" not in run_page.text
    assert client.get("/api/flow-runs").status_code == 401  # the data itself needs the key
    assert client.get("/static/js/runs.js").status_code == 200  # the assets do not


def test_the_deployments_page_asks_for_work_pools_only_where_the_server_has_them(client: TestClient) -> None:
    html = client.get("/deployments").text
    assert page_data(html)["work_pools"] is (client.get("/api/work-pools").status_code == 200)
    assert 'aria-current="page">Deployments</a>' in html and 'id="workers"' in html


def test_assets_are_served_with_the_types_browsers_need(client: TestClient) -> None:
    for path, kind in (
        ("/static/js/runs.js", "javascript"),
        ("/static/js/api.js", "javascript"),
        ("/static/css/dashboard.css", "text/css"),
        ("/static/vendor/uplot/uPlot.esm.js", "javascript"),
        ("/static/vendor/uplot/uPlot.min.css", "text/css"),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], (path, response.headers["content-type"])
        assert response.headers["cache-control"] == "no-cache"
    assert client.get("/static/vendor/uplot/LICENSE").status_code == 200
    assert client.get("/static/../app.py").status_code == 404


def test_run_history_counts_runs_per_period_by_state(client: TestClient, store: EventStore) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    add_runs(store, 3, hour + timedelta(minutes=1), step=timedelta(minutes=5))
    add_runs(store, 2, hour + timedelta(minutes=2), final="Failed", flow="report", step=timedelta(minutes=5))
    add_runs(store, 4, hour + timedelta(hours=2, minutes=1), step=timedelta(minutes=1), tags=["prod"])
    params = {"since": (hour - timedelta(hours=1)).isoformat(), "until": (hour + timedelta(hours=4)).isoformat()}
    history = client.get("/api/flow-runs/history", params=params).json()
    assert history["grain"] == "hour"
    assert [(p["start"][:13], p["counts"]) for p in history["periods"]] == [
        (hour.isoformat()[:13], {"COMPLETED": 3, "FAILED": 2}),
        ((hour + timedelta(hours=2)).isoformat()[:13], {"COMPLETED": 4}),
    ]
    by_flow = client.get("/api/flow-runs/history", params={**params, "flow_name": "report"}).json()
    assert [p["counts"] for p in by_flow["periods"]] == [{"FAILED": 2}]
    tagged = client.get("/api/flow-runs/history", params={**params, "tag": "prod", "grain": "day"}).json()
    assert sum(p["counts"].get("COMPLETED", 0) for p in tagged["periods"]) == 4
    minutes = client.get("/api/flow-runs/history", params={**params, "grain": "minute"}).json()
    assert sum(sum(p["counts"].values()) for p in minutes["periods"]) == 9 and len(minutes["periods"]) == 9
    too_many = client.get("/api/flow-runs/history", params={"since": "2000-01-01T00:00:00Z", "grain": "minute"})
    assert too_many.status_code == 422 and "too many" in too_many.json()["detail"]
    default = client.get("/api/flow-runs/history").json()  # the last 24 hours by hour
    assert sum(sum(p["counts"].values()) for p in default["periods"]) == 9


def test_analytics_periods_carry_their_own_rate_and_percentiles(client: TestClient, store: EventStore) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    add_runs(store, 2, day + timedelta(hours=1))
    add_runs(store, 2, day + timedelta(days=1, hours=1), final="Failed")
    report = client.get("/api/analytics/flows", params={"since": (day - timedelta(days=1)).isoformat()}).json()
    (group,) = report["groups"]
    first, second = group["periods"][:2]
    assert first["success_rate"] == 1.0 and second["success_rate"] == 0.0
    assert first["p50"] is not None and first["p95"] is not None and first["p50"] <= first["p95"]
