"""Opening the configured store for a CLI command, with errors a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ledgerflow.api.cli.console import fail
from ledgerflow.events import CorruptStore, EventStore, StoreUnavailable, load_settings, open_store

__all__ = ["opened_store"]


@contextmanager
def opened_store() -> Iterator[EventStore]:
    settings = load_settings()
    try:
        store = open_store(settings.store_url)
    except CorruptStore as exc:
        fail(str(exc), CorruptStore.hint)
    except StoreUnavailable as exc:
        fail(
            " ".join(str(exc).split()),
            "check LEDGERFLOW_HOME and LEDGERFLOW_DATABASE_URL, or unset the URL to use the embedded SQLite store",
        )
    try:
        yield store
    finally:
        store.close()
