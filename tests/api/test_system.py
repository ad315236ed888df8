"""`/health`, `/metrics` in Prometheus text format, `/openapi.json` and `/docs`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from ledgerflow.api.http.app import create_app
from ledgerflow.api.http.settings import ApiSettings
from tests.api.conftest import append_body, local_client, settings_for, visible, wait_until
from tests.api.tcp_proxy import TcpProxy


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }


def test_health_and_metrics_describe_the_log_runs_and_requests(make_client: Callable[..., TestClient]) -> None:
    client = make_client()  # with the projection runner
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["database"] == "reachable"
    assert set(health["projection_lag"]) == {"runs", "lineage", "analytics", "deployments", "work_pools"}
    created = {"flow_run_id": "r-1", "flow_name": "etl", "run_name": "r-1"}
    failed = {"flow_run_id": "r-1", "state_type": "FAILED", "state_name": "Failed"}
    body = {"appends": [{"stream": "flow-run-r-1", "events": [
        {"type": "flow-run.created", "data": created}, {"type": "flow-run.Failed", "data": failed},
    ]}]}
    assert client.post("/api/events", json=body).status_code == 200
    client.post("/api/events", json=append_body("other-1", "x.y"))
    visible(client, 3)
    wait_until(lambda: samples(client).get(("ledgerflow_flow_runs", (("state", "FAILED"),))) == 1)
    figures = samples(client)
    assert figures[("ledgerflow_events_appended_total", ())] == 3
    assert figures[("ledgerflow_log_head_position", ())] >= 3
    assert figures[("ledgerflow_projection_lag_events", (("projection", "runs"),))] == 0
    posts = ("ledgerflow_http_request_duration_seconds_count",
             (("method", "POST"), ("route", "/api/events"), ("status", "200")))
    assert figures[posts] == 2


def test_openapi_and_docs_are_published(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/events", "/api/events/feed", "/api/flow-runs", "/api/flow-runs/{flow_run_id}/cancel",
                 "/api/flow-runs/{flow_run_id}/as-of", "/api/analytics/flows", "/health", "/metrics"):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AppendRequest"}
    events = spec["components"]["schemas"]["StreamAppendIn"]["properties"]["events"]
    assert events["items"] == {"$ref": "#/components/schemas/EventIn"} and "EventIn" in spec["components"]["schemas"]
    assert "swagger" in client.get("/docs").text.lower()


def test_health_is_503_while_the_database_is_unreachable(tmp_path: Path, postgres_schema_url: str) -> None:
    url = make_url(postgres_schema_url)
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as line:
        through_proxy = url.set(host="127.0.0.1", port=line.port).render_as_string(hide_password=False)
        app = create_app(settings_for(tmp_path, through_proxy), ApiSettings(run_projections=False))
        with local_client(app) as client:
            fine = client.get("/health")
            assert fine.status_code == 200 and fine.json()["database"] == "reachable"
            assert fine.json()["projection_lag"] == {"runs": 0, "lineage": 0, "analytics": 0, "deployments": 0, "work_pools": 0}

            line.stop()
            down = client.get("/health")
            assert down.status_code == 503, down.text
            assert down.json()["status"] == "unavailable" and down.json()["head"] is None
            assert "cannot be reached" in down.json()["database"]
            refused = client.get("/health")  # the pool's dead connections are gone: a new one is refused
            assert refused.status_code == 503 and "cannot be reached" in refused.json()["database"], refused.text

            line.start()
            wait_until(lambda: client.get("/health").status_code == 200)
