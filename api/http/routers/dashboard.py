"""The dashboard's pages: `/` (runs), `/runs/{id}`, `/analytics`, `/events`, `/automations`,
`/deployments`.

Each page is server-rendered HTML that its ES module (static/js/) brings to life through the
same JSON API the CLI uses. Without API keys (a loopback server) the runs page and the run page
render their data here, so the first paint needs no second request; with keys on, a page
carries no data (a browser navigation cannot send the key) and its script fetches it with the
key the user entered. Every page names the log cursor its data reflects, and its live feed
starts there: nothing that happens between the render and the feed's connection is missed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import HTMLResponse
from starlette.routing import Match

from ledgerflow.api.http.deps import ReadModelDep, StateDep
from ledgerflow.api.http.templating import page
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.states import StateType
from ledgerflow.projections import queries
from ledgerflow.projections.errors import InvalidQuery, RunNotFound
from ledgerflow.projections.models import FlowRunPage

__all__ = ["RANGES", "RunFilters", "router"]

router = APIRouter(include_in_schema=False)

RANGES: dict[str, tuple[timedelta | None, str]] = {
    "1h": (timedelta(hours=1), "minute"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
    "all": (None, "day"),
}
"""Time ranges of the runs page: how far back, and the run-history chart's grain."""
_ALL_CHART = timedelta(days=30)
"""The run-history chart of "all time" shows the last 30 days."""
PAGE_SIZE = 50
_STATE_TYPES = [t.value for t in StateType]

Text = Annotated[str | None, Query(max_length=200)]


def _blank(value: str | None) -> str | None:
    # An HTML form sends an empty field as `name=`: that means "no filter".
    return value.strip() or None if value is not None else None


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{name}: {value!r} is not a date and time (ISO 8601)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunFilters:
    """The runs page's filters, as the form sends them and the API takes them."""

    flow: str | None = None
    state: str | None = None
    tags: list[str] = field(default_factory=list)
    deployment: str | None = None
    range: str = "all"
    since: datetime | None = None
    until: datetime | None = None

    def window(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """[since, until) of the runs listed: the custom times, else the range's."""
        if self.since is not None or self.until is not None:
            return self.since, self.until
        back, _ = RANGES[self.range]
        return (now - back if back is not None else None), None

    def chart(self, now: datetime) -> tuple[datetime, datetime, str]:
        """[since, until) and grain of the run-history chart."""
        since, until = self.window(now)
        until = until or now
        since = since or until - _ALL_CHART
        span = until - since
        grain = "minute" if span <= timedelta(hours=2) else "hour" if span <= timedelta(days=7) else "day"
        if span > timedelta(days=1900):
            since = until - timedelta(days=1900)
        return since, until, grain

    def query(self, cursor: str | None = None) -> str:
        """The page's URL query for these filters (and a page cursor)."""
        pairs = [
            ("flow", self.flow), ("state", self.state), ("tag", ", ".join(self.tags) or None),
            ("deployment", self.deployment), ("range", self.range if self.range != "all" else None),
            ("since", self.since.isoformat() if self.since else None),
            ("until", self.until.isoformat() if self.until else None), ("cursor", cursor),
        ]
        return urlencode([(name, value) for name, value in pairs if value])

    def as_json(self, now: datetime) -> dict[str, Any]:
        since, until = self.window(now)
        chart_since, chart_until, grain = self.chart(now)
        values = asdict(self)
        values.update(
            since=self.since.isoformat() if self.since else None,
            until=self.until.isoformat() if self.until else None,
            window={"since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
            chart={"since": chart_since.isoformat(), "until": chart_until.isoformat(), "grain": grain,
                   "live": self.until is None},
        )
        return values


def _base(state: StateDep, active: str, title: str) -> dict[str, Any]:
    return {"active": active, "title": title, "auth": state.api.auth, "data": {"auth": state.api.auth}}


@router.get("/", response_class=HTMLResponse)
def runs_page(
    state: StateDep,
    rm: ReadModelDep,
    flow: Text = None,
    state_filter: Annotated[str | None, Query(alias="state", max_length=40)] = None,
    tag: Text = None,
    deployment: Text = None,
    range_: Annotated[str, Query(alias="range", max_length=10)] = "all",
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Flow runs, newest first, 50 a page; live states; filters; the run-history chart."""
    now = datetime.now(UTC)
    error = None
    try:
        if range_ not in RANGES:
            raise InvalidQuery(f"range must be one of {', '.join(RANGES)}, not {range_!r}")
        filters = RunFilters(
            flow=_blank(flow), state=_blank(state_filter),
            tags=[t.strip() for t in (tag or "").split(",") if t.strip()],
            deployment=_blank(deployment), range=range_,
            since=_time(_blank(since), "since"), until=_time(_blank(until), "until"),
        )
    except InvalidQuery as exc:
        filters, error = RunFilters(), str(exc)
    after = queries.projection_cursor(rm, "runs")  # before the query: the feed re-applies, never misses
    runs: FlowRunPage | None = None
    if not state.api.auth and error is None:
        window = filters.window(now)
        try:
            runs = queries.list_flow_runs(
                rm, flow_name=filters.flow, state=filters.state, tags=filters.tags, deployment_id=filters.deployment,
                since=window[0], until=window[1], limit=PAGE_SIZE, cursor=_blank(cursor),
            )
        except InvalidQuery as exc:
            error = str(exc)
    data = {
        "after": after, "filters": filters.as_json(now), "cursor": _blank(cursor), "auth": state.api.auth,
        "page_size": PAGE_SIZE, "rendered": runs is not None,
    }
    context = _base(state, "runs", "Runs") | {
        "filters": filters, "runs": runs, "error": error, "data": data, "ranges": list(RANGES),
        "state_types": _STATE_TYPES, "cursor": _blank(cursor),
        "older": f"/?{filters.query(runs.next_cursor)}" if runs and runs.next_cursor else None,
        "newest": f"/?{filters.query()}" if _blank(cursor) else None,
    }
    return page("runs.html", context, 422 if error else 200)


@router.get("/runs/{flow_run_id}", response_class=HTMLResponse)
def run_page(state: StateDep, rm: ReadModelDep, flow_run_id: Annotated[str, Path(min_length=1, max_length=100)]) -> HTMLResponse:
    """One flow run: states, task timeline, logs, artifacts, lineage; replay and cancel."""
    after = queries.projection_cursor(rm, "runs")
    detail = None
    if not state.api.auth:
        try:
            detail = queries.get_run(rm, flow_run_id)
        except RunNotFound:
            # A run this new may be in the log before the projections have folded it: the
            # page's script waits for it. Only a run the log does not have is not found.
            if not state.store.read_stream(flow_run_stream(flow_run_id), limit=1):
                context = _base(state, "runs", "Run not found") | {"message": f"There is no flow run with id {flow_run_id}."}
                return page("not_found.html", context, 404)
    title = (detail.flow_run.run_name or flow_run_id) if detail else "Flow run"
    data = {
        "run_id": flow_run_id, "after": after, "auth": state.api.auth,
        "detail": detail.model_dump(mode="json") if detail else None,
    }
    context = _base(state, "runs", title) | {"run_id": flow_run_id, "detail": detail, "data": data}
    return page("run.html", context)


@router.get("/analytics", response_class=HTMLResponse)
def analytics_page(state: StateDep) -> HTMLResponse:
    """Success rate and duration percentiles per flow and per task over time."""
    return page("analytics.html", _base(state, "analytics", "Analytics") | {"data": {"auth": state.api.auth}})


@router.get("/events", response_class=HTMLResponse)
def events_page(
    state: StateDep,
    type: Annotated[str | None, Query(max_length=400)] = None,
    flow_run_id: Annotated[str | None, Query(max_length=100)] = None,
    flow_name: Text = None,
) -> HTMLResponse:
    """The live event log with type and resource filters and a time histogram."""
    filters = {"type": _blank(type) or "", "flow_run_id": _blank(flow_run_id) or "", "flow_name": _blank(flow_name) or ""}
    data = {"auth": state.api.auth, "filters": filters}
    return page("events.html", _base(state, "events", "Events") | {"filters": filters, "data": data})


@router.get("/automations", response_class=HTMLResponse)
def automations_page(state: StateDep) -> HTMLResponse:
    """Automations, their recent firings and outcomes; create or edit one, backtested first."""
    return page("automations.html", _base(state, "automations", "Automations"))


def _serves(request: Request, path: str) -> bool:
    """Whether this app answers GET `path` (a route, not the 404 fallback)."""
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "app": request.app}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


@router.get("/deployments", response_class=HTMLResponse)
def deployments_page(state: StateDep, request: Request) -> HTMLResponse:
    """Deployments with their schedules, next and recent runs; run, pause, resume; work pools."""
    # The work pools section asks the API only if this server has it (no 404 noise otherwise).
    data = {"auth": state.api.auth, "work_pools": _serves(request, "/api/work-pools")}
    return page("deployments.html", _base(state, "deployments", "Deployments") | {"data": data})
