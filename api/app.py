"""The FastAPI application: `create_app(settings, api)` is the server's composition root."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from ledgerflow.api.errors import install_error_handlers
from ledgerflow.api.metrics import Metrics
from ledgerflow.api.middleware import BodyLimit, RequestTimer
from ledgerflow.api.openapi import publish_body_schemas
from ledgerflow.api.responses import OrjsonResponse
from ledgerflow.api.routers import events, runs, system
from ledgerflow.api.schemas import AppendRequest
from ledgerflow.api.settings import ApiSettings, load_api_settings
from ledgerflow.api.state import ServerState
from ledgerflow.events import Settings, load_settings

__all__ = ["app_from_environment", "create_app"]


def create_app(settings: Settings, api: ApiSettings | None = None) -> FastAPI:
    api = api or ApiSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await to_thread.run_sync(ServerState.open, settings, api, metrics)
        metrics.watch(state)
        state.start()
        app.state.ledgerflow = state
        try:
            yield
        finally:
            await to_thread.run_sync(state.close)

    app = FastAPI(
        title="ledgerflow",
        summary="Workflow runs, their event log and live feeds",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    install_error_handlers(app)
    for router in (system.router, events.router, events.stream_router, events.streams_router, runs.router, runs.write_router, runs.analytics_router):
        app.include_router(router)
    publish_body_schemas(app, [AppendRequest])
    app.add_middleware(BodyLimit, limit=api.max_body_bytes)
    app.add_middleware(RequestTimer, histogram=metrics.latency)
    return app


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`server start --workers N`): the parent has put
    every setting, auth included, in the environment."""
    return create_app(load_settings(), load_api_settings(os.environ))
