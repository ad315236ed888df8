"""Opening the configured store, or the server's client, for a CLI command (errors are
explained by the root command, or here for a resource a command names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

import httpx

from ledgerflow.api.cli.console import fail
from ledgerflow.events import EventStore, EventStoreError, load_settings, open_store

__all__ = ["opened_store", "store_or_server"]


class _Client(Protocol):
    http: httpx.Client


Local = TypeVar("Local")
Remote = TypeVar("Remote", bound=_Client)


@contextmanager
def opened_store() -> Iterator[EventStore]:
    store = open_store(load_settings().store_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def store_or_server(
    remote: Callable[[str, str | None], Remote], local: Callable[[EventStore], Local], *,
    missing: type[Exception], listing: str, refused: tuple[type[Exception], ...] = (),
) -> Iterator[Remote | Local]:
    """The server's backend when `LEDGERFLOW_API_URL` is set, else the store's. A `missing`
    resource ends the command with one line pointing at `listing`; `refused` errors (and the
    store's) with their message."""
    settings = load_settings()
    failures: tuple[type[Exception], ...] = (*refused, EventStoreError)
    try:
        if settings.api_url:
            client = remote(settings.api_url, settings.api_key)
            try:
                yield client
            finally:
                client.http.close()
        else:
            with opened_store() as store:
                yield local(store)
    except missing as exc:
        fail(str(exc), f"list them with: {listing}")
    except failures as exc:
        fail(" ".join(str(exc).split()))
