"""`/api/events`: batch ingest, paged reads, and the live feed as SSE and WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from ledgerflow.api.http.deps import HubDep, StateDep, StoreDep, check_key, require
from ledgerflow.api.http.event_query import EventQuery, EventsPage, read_page
from ledgerflow.api.http.feed import FeedFilter
from ledgerflow.api.keys import Scope
from ledgerflow.api.http.openapi import json_body
from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.api.http.schemas import AppendRequest, AppendResult, EventPage, event_json
from ledgerflow.api.http.times import Time
from ledgerflow.api.http.state import ServerState
from ledgerflow.events import ConcurrencyConflict, Cursor
from ledgerflow.events.reserved import check_appends

__all__ = ["router", "stream_router", "streams_router"]

router = APIRouter(prefix="/api/events", tags=["events"])
streams_router = APIRouter(prefix="/api/streams", tags=["events"], dependencies=[Depends(require(Scope.READ))])
stream_router = APIRouter(prefix="/api/events", tags=["events"])

TypeQuery = Annotated[
    list[str] | None, Query(description="Event types; '*' is a wildcard (task-run.*)")
]
FlowRunQuery = Annotated[list[str] | None, Query(description="Only these flow runs")]
FlowNameQuery = Annotated[list[str] | None, Query(description="Only runs of these flows")]
AfterQuery = Annotated[str | None, Query(description="Start after this cursor", max_length=64)]


@router.post(
    "",
    response_model=AppendResult,
    dependencies=[Depends(require(Scope.WORKER))],
    responses={409: {"description": "an expected version did not hold; nothing was written"}},
    openapi_extra=json_body(AppendRequest),
)
async def append_events(request: Request, state: StateDep) -> OrjsonResponse:
    """Append to one or more streams in one transaction; idempotent by event id."""
    raw = await request.body()
    return await to_thread.run_sync(_append, state, raw)


def _append(state: ServerState, raw: bytes) -> OrjsonResponse:
    # pydantic-core parses and validates the bytes in one pass; FastAPI's body parameter would
    # build Python objects with json.loads first and validate them field by field after.
    try:
        body = AppendRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    appends = check_appends(state.store, [part.to_append() for part in body.appends], cache=state.run_streams)
    try:
        stored = state.appends.append_streams(appends)
    except ConcurrencyConflict as exc:
        state.run_streams.forget(exc.stream)
        raise
    state.metrics.appended.inc(len(stored))
    return OrjsonResponse({"events": [event_json(e) for e in stored]})


@router.get("", response_model=EventPage, dependencies=[Depends(require(Scope.READ))])
def read_events(
    store: StoreDep,
    type: TypeQuery = None,
    stream: Annotated[str | None, Query(max_length=200)] = None,
    resource: Annotated[
        str | None, Query(min_length=1, max_length=100, description="A flow-run or task-run id its events name")
    ] = None,
    since: Annotated[Time | None, Query(description="Occurred at or after")] = None,
    until: Annotated[Time | None, Query(description="Occurred before")] = None,
    after: AfterQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    last: Annotated[int | None, Query(ge=1, le=5000, description="Only the newest N (instead of after)")] = None,
) -> OrjsonResponse:
    """Events after `after` in global order, optionally of matching types, one stream, one
    resource and a time window; `next_after` moves past events the filters skipped."""
    cursor = Cursor.parse(after)
    if last is not None:
        if any(given is not None for given in (stream, after, resource, since, until)):
            raise HTTPException(422, "give last (with type only), or after and the other filters, not both")
        newest = store.read_last(last, types=type)
        page = EventsPage(newest, newest[-1].cursor if newest else str(cursor))
    else:
        query = EventQuery(types=type or (), stream=stream, resource=resource, since=since, until=until)
        page = read_page(store, query, cursor, limit)
    return OrjsonResponse({"events": [event_json(e) for e in page.events], "next_after": page.next_after})


@streams_router.get("/{stream:path}", response_model=EventPage)
def read_stream(
    store: StoreDep,
    stream: Annotated[str, Path(min_length=1, max_length=200)],
    from_version: Annotated[int, Query(ge=1, le=2**62, description="First stream position to return")] = 1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    type: TypeQuery = None,
) -> OrjsonResponse:
    """One stream's events in stream order, from `from_version` on (empty for an unknown stream),
    optionally only those of matching types."""
    events = store.read_stream(stream, from_version, limit, type)
    next_after = events[-1].cursor if events else ""
    return OrjsonResponse({"events": [event_json(e) for e in events], "next_after": next_after})


@router.get(
    "/feed",
    dependencies=[Depends(require(Scope.READ))],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one SSE message per event"}},
)
async def feed_sse(
    hub: HubDep,
    state: StateDep,
    type: TypeQuery = None,
    flow_run_id: FlowRunQuery = None,
    flow_name: FlowNameQuery = None,
    after: AfterQuery = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Live events as Server-Sent Events; each `id:` is the event's cursor, so a reconnecting
    client resumes with `Last-Event-ID` (or `after`) and misses and repeats nothing."""
    resume = last_event_id or after
    start = Cursor.parse(resume if resume is not None else await to_thread.run_sync(hub.store.head))
    feed = FeedFilter.of(type, flow_run_id, flow_name)
    heartbeat = state.api.heartbeat_seconds

    async def body() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        async for batch in hub.follow(start, feed, heartbeat):
            if not batch:
                yield b": keep-alive\n\n"
                continue
            yield b"".join(b"id: " + i.cursor.encode() + b"\ndata: " + i.json + b"\n\n" for i in batch)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@stream_router.websocket("/ws")
async def feed_ws(
    websocket: WebSocket,
    hub: HubDep,
    state: StateDep,
    type: TypeQuery = None,
    flow_run_id: FlowRunQuery = None,
    flow_name: FlowNameQuery = None,
    after: AfterQuery = None,
) -> None:
    """Live events over a WebSocket, one JSON text message per event; resume with `after`."""
    refused = await to_thread.run_sync(check_key, state, websocket, Scope.READ)
    if refused is not None:
        await websocket.close(code=4401 if refused[0] == 401 else 4403, reason=refused[1])
        return
    try:
        start = Cursor.parse(after) if after is not None else Cursor.parse(await to_thread.run_sync(hub.store.head))
    except ValueError as exc:
        await websocket.close(code=4400, reason=str(exc)[:120])
        return
    await websocket.accept()
    feed = FeedFilter.of(type, flow_run_id, flow_name)

    async def send() -> None:
        async for batch in hub.follow(start, feed, state.api.heartbeat_seconds):
            for item in batch:
                await websocket.send_text(item.json.decode())

    async with anyio.create_task_group() as group:

        async def sender() -> None:
            try:
                await send()
            except (WebSocketDisconnect, OSError, RuntimeError):
                pass
            group.cancel_scope.cancel()

        group.start_soon(sender)
        try:
            while True:  # the client sends nothing we need; this notices it leaving
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        group.cancel_scope.cancel()
