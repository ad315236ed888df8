"""CLI commands against a server (`LEDGERFLOW_API_URL`) instead of the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from ledgerflow.api.cli.client import ApiClient
from ledgerflow.api.cli.console import fail
from ledgerflow.events import EventStoreError, Settings, StoredEvent
from ledgerflow.projections.models import FlowRunPage

__all__ = ["remote_flow_runs", "remote_tail"]


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
