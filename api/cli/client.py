"""A small synchronous client of the API server, for CLI commands run with `LEDGERFLOW_API_URL`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Self
from urllib.parse import quote

import httpx
import orjson

from ledgerflow.api.keys import ApiKey
from ledgerflow.events import EventStoreError, StoredEvent, StoreUnavailable
from ledgerflow.events.runs import RunNotFound, RunStateConflict
from ledgerflow.projections.models import AnalyticsReport, Artifact, FlowRunPage, LineageGraph, LogPage, RunDetail

__all__ = ["ApiClient", "ApiError", "ApiNotFound"]


class ApiError(EventStoreError):
    """The server refused a request (4xx) or could not be reached."""


class ApiNotFound(ApiError):
    """The server has no such resource (404)."""


class ApiClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self.http.get(path, params={k: v for k, v in params.items() if v is not None})
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code == 404:
            raise ApiNotFound(f"HTTP 404: {_detail(response)}")
        if response.status_code != 200:
            raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
        return orjson.loads(response.content)

    def get_flow_run(self, ref: str) -> RunDetail:
        """`GET /api/flow-runs/{ref}`: `ref` is an id, a unique id prefix or a run name."""
        return RunDetail.model_validate(self._get(f"/api/flow-runs/{quote(ref, safe='')}", {}))

    def run_artifacts(self, run_id: str) -> list[Artifact]:
        return [Artifact.model_validate(a) for a in self._get(f"/api/flow-runs/{quote(run_id, safe='')}/artifacts", {})]

    def run_logs(self, run_id: str, min_level: int, after: int, limit: int) -> LogPage:
        params = {"min_level": min_level, "after": after, "limit": limit}
        return LogPage.model_validate(self._get(f"/api/flow-runs/{quote(run_id, safe='')}/logs", params))

    def lineage(self, ref: str, depth: int, direction: str) -> LineageGraph:
        """The graph around a flow run or task run (`ref`: id, unique id prefix or run name)."""
        params = {"depth": depth, "direction": direction}
        return LineageGraph.model_validate(self._get(f"/api/flow-runs/{quote(ref, safe='')}/lineage", params))

    def analytics(self, dimension: str, since: datetime, grain: str, value: str | None) -> AnalyticsReport:
        """`GET /api/analytics/{flows,deployments,tags,tasks}`."""
        name = {"flow": "flow_name", "deployment": "deployment_id", "tag": "tag", "task": "task_key"}[dimension]
        params = {"since": since.isoformat(), "grain": grain, name: value}
        return AnalyticsReport.model_validate(self._get(f"/api/analytics/{dimension}s", params))

    def projections_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._get("/api/projections", {})
        return status

    def verify(self) -> dict[str, Any]:
        report: dict[str, Any] = self._get("/api/events/verify", {})
        return report

    def api_keys(self) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in self._get("/api/api-keys", {})]

    def append(self, stream: str, type_: str, data: dict[str, Any]) -> StoredEvent:
        """`POST /api/events`: one event, appended to `stream` whatever its version."""
        body = {"appends": [{"stream": stream, "events": [{"type": type_, "data": data}], "expected_version": "any"}]}
        try:
            response = self.http.post("/api/events", json=body)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code != 200:
            raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
        return StoredEvent.model_validate(orjson.loads(response.content)["events"][0])

    def list_flow_runs(self, **filters: Any) -> FlowRunPage:
        """`GET /api/flow-runs` with the filters of `projections.queries.list_flow_runs`
        (`tags` becomes repeated `tag`, datetimes ISO strings)."""
        params = dict(filters)
        if "tags" in params:
            params["tag"] = list(params.pop("tags") or []) or None
        for name in ("since", "until"):
            if params.get(name) is not None:
                params[name] = params[name].isoformat()
        return FlowRunPage.model_validate(self._get("/api/flow-runs", params))

    def cancel_flow_run(self, run_id: str, message: str | None = None) -> str:
        """`POST /api/flow-runs/{id}/cancel`; the state name the run is now in."""
        try:
            response = self.http.post(f"/api/flow-runs/{run_id}/cancel", json={"message": message})
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code == 404:
            raise RunNotFound(run_id)
        if response.status_code == 409:
            raise RunStateConflict(_detail(response))
        if response.status_code != 200:
            raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
        return str(orjson.loads(response.content)["type"]).partition(".")[2]

    def resume_flow_run(self, run_id: str, run_input: dict[str, Any] | None = None) -> str:
        """`POST /api/flow-runs/{id}/resume`; the state name the run is now in."""
        try:
            response = self.http.post(f"/api/flow-runs/{run_id}/resume", json={"run_input": run_input})
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code == 404:
            raise RunNotFound(run_id)
        if response.status_code == 409:
            raise RunStateConflict(_detail(response))
        if response.status_code != 200:
            raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
        return str(orjson.loads(response.content)["type"]).partition(".")[2]

    def read_events(
        self, after: str | None = None, limit: int = 100, types: Sequence[str] | None = None, last: int | None = None
    ) -> list[StoredEvent]:
        page = self._get("/api/events", {"after": after, "limit": limit, "type": list(types or []) or None, "last": last})
        return [StoredEvent.model_validate(e) for e in page["events"]]

    def head(self) -> str:
        return str(self._get("/health", {})["head"])

    def follow(self, after: str, types: Sequence[str] | None = None) -> Iterator[StoredEvent]:
        """Events after `after` from the SSE feed, forever; reconnects from the last cursor."""
        cursor = after
        params = {"type": list(types or []) or None}
        delay = 0.1
        while True:
            try:
                headers = {"last-event-id": cursor, "accept": "text/event-stream"}
                with self.http.stream(
                    "GET", "/api/events/feed", params={k: v for k, v in params.items() if v}, headers=headers,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as response:
                    if response.status_code != 200:
                        response.read()
                        raise ApiError(f"HTTP {response.status_code}: {_detail(response)}")
                    delay = 0.1
                    for event in _sse_events(response.iter_lines()):
                        cursor = event.cursor
                        yield event
            except httpx.TransportError:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def _sse_events(lines: Iterator[str]) -> Iterator[StoredEvent]:
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line == "" and data:
            yield StoredEvent.model_validate(orjson.loads("\n".join(data)))
            data = []


def _detail(response: httpx.Response) -> str:
    try:
        detail = orjson.loads(response.content)["detail"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response.text[:200]
    if isinstance(detail, list):  # request validation: where and what
        return "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in detail if isinstance(e, dict))
    return str(detail)
