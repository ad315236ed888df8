"""`ledgerflow server start`: the API under uvicorn, projections running in the same process."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from ledgerflow.api.cli.console import fail, out
from ledgerflow.api.http.settings import is_loopback, load_api_settings
from ledgerflow.events import StoreUnavailable, load_settings
from ledgerflow.events.store import redacted

app = typer.Typer(help="Run the API server.", no_args_is_help=True)


@app.command()
def start(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback turns auth on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 4300,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port (PostgreSQL).")] = 1,
) -> None:
    """Serve the REST API, the live event feeds and /metrics."""
    import uvicorn

    from ledgerflow.api.http.app import SETTINGS_VARIABLE, create_app
    from ledgerflow.api.http.state import prepare_database

    if port == 0:  # a port of our choosing: the built-in runner's run processes must know it
        port = _free_port(host)
    try:
        api = load_api_settings(os.environ, host, port)
    except ValueError as exc:
        fail(str(exc))
    settings = load_settings()
    out.print(
        f"ledgerflow server on http://{host}:{port} (store: {redacted(settings.store_url)}, "
        f"auth: {'on' if api.auth else 'off'})"
    )
    if not is_loopback(host) and not api.allowed_hosts:
        out.print(
            "[dim]requests must name this server as localhost or by its bind address; list the "
            "names clients use for it in LEDGERFLOW_ALLOWED_HOSTS[/]"
        )
    options = {"host": host, "port": port, "log_level": log_level, "ws": "websockets-sansio"}
    # A database that cannot be used fails here, in one line, not in uvicorn's startup; and
    # workers starting together on a fresh database would race to create its tables.
    prepare_database(settings)
    try:
        if workers == 1:
            uvicorn.run(create_app(settings, api), **options)  # type: ignore[arg-type]
        else:
            os.environ[SETTINGS_VARIABLE] = api.model_dump_json()  # the workers read it
            uvicorn.run("ledgerflow.api.http.app:app_from_environment", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    except StoreUnavailable as exc:
        fail(str(exc), "check LEDGERFLOW_DATABASE_URL")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
