"""Opening the configured store for a CLI command (errors are explained by the root command)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ledgerflow.events import EventStore, load_settings, open_store

__all__ = ["opened_store"]


@contextmanager
def opened_store() -> Iterator[EventStore]:
    store = open_store(load_settings().store_url)
    try:
        yield store
    finally:
        store.close()
