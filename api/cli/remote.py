"""CLI commands against a server (`LEDGERFLOW_API_URL`) instead of the database.

With a server configured every command asks it; the few that only make sense on the
database itself (`local_only`) say so and exit non-zero rather than answer for another store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from ledgerflow.api.cli.client import ApiClient
from ledgerflow.api.cli.console import fail
from ledgerflow.events import EventStoreError, Settings, StoredEvent, StoreUnavailable, load_settings
from ledgerflow.projections.models import FlowRunPage

__all__ = ["local_only", "remote_flow_runs", "remote_tail", "server_client"]


def local_only(command: str) -> None:
    """End `ledgerflow <command>` with one line when a server is configured: it works on the
    local database only, which is not the one the server answers for."""
    if load_settings().api_url:
        fail(f"`ledgerflow {command}` works on the database directly, not through the server at LEDGERFLOW_API_URL",
             "run it where the server's database is, with LEDGERFLOW_API_URL unset")


@contextmanager
def server_client(settings: Settings) -> Iterator[ApiClient]:
    """A client of the configured server; an error it raises ends the command with one line."""
    assert settings.api_url is not None
    with ApiClient(settings.api_url, settings.api_key) as client:
        try:
            yield client
        except StoreUnavailable as exc:
            fail(" ".join(str(exc).split()), f"is the server at {settings.api_url} running?")
        except EventStoreError as exc:
            fail(" ".join(str(exc).split()))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def remote_tail(
    settings: Settings,
    follow: bool,
    types: list[str] | None,
    after: str | None,
    limit: int,
    show: Callable[[StoredEvent], None],
) -> None:
    """`events tail` over HTTP: the newest events from `GET /api/events`, then the SSE feed."""
    assert settings.api_url is not None
    with ApiClient(settings.api_url, settings.api_key) as client:
        try:
            if after is None:
                events = client.read_events(last=limit, types=types)
            else:
                events = client.read_events(after=after, limit=limit, types=types)
            for event in events:
                show(event)
            if follow:
                start = events[-1].cursor if events else (after or client.head())
                for event in client.follow(start, types):
                    show(event)
        except EventStoreError as exc:
            fail(str(exc), f"is the server at {settings.api_url} running, and is LEDGERFLOW_API_KEY set?")
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def remote_flow_runs(settings: Settings, **filters: Any) -> FlowRunPage:
    """`flow-run ls` over HTTP: the keyword arguments of `projections.queries.list_flow_runs`."""
    assert settings.api_url is not None
    with ApiClient(settings.api_url, settings.api_key) as client:
        try:
            return client.list_flow_runs(**filters)
        except EventStoreError as exc:
            fail(str(exc), f"is the server at {settings.api_url} running, and is LEDGERFLOW_API_KEY set?")
