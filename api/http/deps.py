"""`Annotated` dependency aliases the routers declare, and the API key check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from anyio import to_thread
from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from ledgerflow.api.http.feed import FeedHub
from ledgerflow.api.keys import ApiKey, Scope
from ledgerflow.api.http.state import ServerState
from ledgerflow.events import EventStore
from ledgerflow.projections.readmodel import ReadModel

__all__ = [
    "HubDep",
    "ReadModelDep",
    "StateDep",
    "StoreDep",
    "check_key",
    "presented_secret",
    "require",
]


def get_state(conn: HTTPConnection) -> ServerState:
    state: ServerState = conn.app.state.ledgerflow
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def get_store(state: StateDep) -> EventStore:
    return state.store


def get_read_model(state: StateDep) -> ReadModel:
    return state.read_model


def get_hub(state: StateDep) -> FeedHub:
    return state.hub


StoreDep = Annotated[EventStore, Depends(get_store)]
ReadModelDep = Annotated[ReadModel, Depends(get_read_model)]
HubDep = Annotated[FeedHub, Depends(get_hub)]


def presented_secret(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return conn.headers.get("x-api-key") or None


def check_key(state: ServerState, conn: HTTPConnection, needed: Scope) -> tuple[int, str] | None:
    """None when the request may go on, else (status, reason)."""
    if not state.api.auth:
        return None
    secret = presented_secret(conn)
    if secret is None:
        return 401, "an API key is required: send 'Authorization: Bearer <key>'"
    key: ApiKey | None = state.authenticate(secret)
    if key is None:
        return 401, "the API key is unknown or revoked"
    if not key.scope.allows(needed):
        return 403, f"this key's scope is {key.scope}; this endpoint needs {needed}"
    return None


def require(needed: Scope) -> Callable[[HTTPConnection], Awaitable[None]]:
    """A dependency that refuses requests without a live key of scope `needed` or above.

    The key lookup (a database read) runs in a worker thread; with auth off nothing does.
    """

    async def dependency(conn: HTTPConnection) -> None:
        state = get_state(conn)
        if not state.api.auth:
            return
        refused = await to_thread.run_sync(check_key, state, conn, needed)
        if refused is not None:
            status, reason = refused
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            raise HTTPException(status, reason, headers=headers)

    return dependency
