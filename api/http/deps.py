"""`Annotated` dependency aliases the routers declare, and the API key check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import Depends, HTTPException, Query
from starlette.requests import HTTPConnection

from ledgerflow.api.http.feed import FeedHub
from ledgerflow.api.keys import ApiKey, Scope
from ledgerflow.api.http.state import ServerState
from ledgerflow.events import Cursor, EventStore, InvalidCursor
from ledgerflow.projections.errors import ProjectionsBehind
from ledgerflow.projections.readmodel import ReadModel

__all__ = [
    "WAIT_FOR_CURSOR_SECONDS",
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


WAIT_FOR_CURSOR_SECONDS = 5.0
"""How long a read that names `wait_for_cursor` waits for the projections to reach it."""
_WAIT_STEP = 0.02


async def get_read_model(
    state: StateDep,
    wait_for_cursor: Annotated[str | None, Query(max_length=64, description=(
        "A log cursor (an append or the feed returned it): answer once the projections reflect "
        f"the log up to it, waiting up to {WAIT_FOR_CURSOR_SECONDS:g} s (503 if they have not)"
    ))] = None,
) -> ReadModel:
    """The read model; with `wait_for_cursor`, once it has read its writer's writes."""
    read_model = state.read_model
    if wait_for_cursor is not None:
        await _reach(read_model, state.store, Cursor.parse(wait_for_cursor))
    return read_model


async def _reach(read_model: ReadModel, store: EventStore, cursor: Cursor) -> None:
    with anyio.move_on_after(WAIT_FOR_CURSOR_SECONDS):
        while not await to_thread.run_sync(read_model.reflects, cursor):
            await anyio.sleep(_WAIT_STEP)
        return
    head = Cursor.parse(await to_thread.run_sync(store.head))
    if cursor > head:
        raise InvalidCursor(f"wait_for_cursor {cursor} is past the end of the log (its newest event is {head})")
    raise ProjectionsBehind(
        f"the projections have not reached cursor {cursor} within {WAIT_FOR_CURSOR_SECONDS:g} s; try again"
    )


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
