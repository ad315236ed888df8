"""`/health`, `/metrics`, `/api/whoami` and `/api/api-keys` (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ledgerflow.api.http.deps import StateDep, presented_secret, require
from ledgerflow.api.keys import ApiKey, Scope
from ledgerflow.api.http.metrics import projection_lag
from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.events import EventStoreError

__all__ = ["router"]

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str
    database: str
    head: str | None
    projection_lag: dict[str, int]
    feed_clients: int


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(state: StateDep) -> OrjsonResponse:
    """Whether the database answers, and how far each projection is behind the log."""
    try:
        head = state.store.head()
        lag = projection_lag(state)
    except EventStoreError as exc:
        body = Health(status="unavailable", database=str(exc).splitlines()[0], head=None, projection_lag={}, feed_clients=0)
        return OrjsonResponse(body.model_dump(), 503)
    body = Health(status="ok", database="reachable", head=head, projection_lag=lag, feed_clients=state.hub.clients)
    return OrjsonResponse(body.model_dump())


@router.get(
    "/metrics",
    dependencies=[Depends(require(Scope.READ))],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/api-keys", response_model=list[ApiKey], dependencies=[Depends(require(Scope.ADMIN))], tags=["api keys"])
def list_keys(state: StateDep) -> list[ApiKey]:
    """Every API key (never its secret), revoked ones included."""
    return state.keys.list()


class Identity(BaseModel):
    name: str | None
    """The key's name (None when the server needs no key)."""
    scope: Scope
    auth: bool
    """Whether the server checks API keys."""


@router.get("/api/whoami", response_model=Identity, dependencies=[Depends(require(Scope.READ))], tags=["api keys"])
def whoami(state: StateDep, request: Request) -> Identity:
    """The API key this request presented and what it may do: a client checks it may write
    before it starts work (401 without a live key)."""
    if not state.api.auth:
        return Identity(name=None, scope=Scope.ADMIN, auth=False)
    key = state.authenticate(presented_secret(request) or "")
    assert key is not None  # require(Scope.READ) let the request in
    return Identity(name=key.name, scope=key.scope, auth=True)
