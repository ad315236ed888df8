"""The FastAPI application: `create_app(settings, api)` is the server's composition root.

The lifespan opens the `ServerState` (what requests need), then starts the background
services (services.py) under one `Supervisor`, and stops them in reverse before closing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from ledgerflow.api.http.docs import install_docs
from ledgerflow.api.http.errors import install_error_handlers
from ledgerflow.api.http.metrics import Metrics
from ledgerflow.api.http.middleware import BodyLimit, RequestTimer
from ledgerflow.api.http.openapi import publish_body_schemas
from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.api.http.routers import automations, concurrency_limits, dashboard, deployments, events, operations, runs, system, workpools
from ledgerflow.api.http.schemas import AppendRequest
from ledgerflow.api.http.security import install_security
from ledgerflow.api.http.services import forward_spool, services
from ledgerflow.api.http.settings import ApiSettings, load_api_settings
from ledgerflow.api.http.state import ServerState
from ledgerflow.api.http.templating import STATIC, STATIC_URL, Assets
from ledgerflow.events import Settings, load_settings
from ledgerflow.events.gcpause import freeze_startup_heap
from ledgerflow.events.service import Supervisor

__all__ = ["SETTINGS_VARIABLE", "app_from_environment", "create_app"]

SETTINGS_VARIABLE = "LEDGERFLOW_SERVER_SETTINGS"
"""Where `server start --workers N` hands its ApiSettings (JSON) to the worker processes."""

_TITLE = "ledgerflow"


def create_app(settings: Settings, api: ApiSettings | None = None) -> FastAPI:
    api = api or ApiSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        state = await to_thread.run_sync(ServerState.open, settings, api, metrics, loop)
        if api.run_runner:  # what its runs wrote while the server last shut down, before anything judges them
            await to_thread.run_sync(forward_spool, state.store, settings)
        supervisor = Supervisor(services(state, api, settings))
        try:
            await to_thread.run_sync(supervisor.start)
            freeze_startup_heap()
            metrics.watch(state)
            app.state.ledgerflow = state
            yield
        finally:
            await to_thread.run_sync(supervisor.stop)
            await to_thread.run_sync(state.close)

    app = FastAPI(
        title=_TITLE,
        summary="Workflow runs, their event log and live feeds",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: docs.py serves them
        redoc_url=None,
    )
    install_error_handlers(app)
    for router in (system.router, operations.router, events.router, events.stream_router, events.streams_router, runs.router, runs.write_router,
                   runs.task_runs_router, runs.analytics_router, *automations.ROUTERS, deployments.router, deployments.write_router,
                   concurrency_limits.router, concurrency_limits.write_router, *workpools.ROUTERS):
        app.include_router(router)
    install_docs(app, _TITLE)
    app.include_router(dashboard.router)
    app.mount(STATIC_URL, Assets(directory=STATIC), name="static")
    publish_body_schemas(app, [AppendRequest])
    # Each middleware added wraps the ones before it: the request timer sees every request.
    app.add_middleware(BodyLimit, limit=api.max_body_bytes)
    install_security(app, api)
    app.add_middleware(RequestTimer, histogram=metrics.latency)
    return app


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`server start --workers N`): the parent has put
    its ApiSettings in `LEDGERFLOW_SERVER_SETTINGS` and the store's settings in the environment."""
    handed = os.environ.get(SETTINGS_VARIABLE)
    api = ApiSettings.model_validate_json(handed) if handed else load_api_settings(os.environ)
    return create_app(load_settings(), api)
