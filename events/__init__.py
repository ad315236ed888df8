"""The event log: event types, the store (SQLite and PostgreSQL), subscriptions and durable
consumers (`ledgerflow.events.consumer`).

This package is the domain core: it imports nothing else of ledgerflow's.
"""

from ledgerflow.events.cursor import Cursor
from ledgerflow.events.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    CorruptStore,
    EventStoreError,
    EventTooLarge,
    InvalidCursor,
    InvalidEvent,
    InvalidStreamName,
    PayloadNotSerializable,
    StoreUnavailable,
)
from ledgerflow.events.model import ANY, NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.settings import InvalidSettings, Settings, load_settings
from ledgerflow.events.reading import Page
from ledgerflow.events.store import EventStore, open_store
from ledgerflow.events.subscription import Subscription

__all__ = [
    "ANY",
    "NO_STREAM",
    "ConcurrencyConflict",
    "CorruptEvent",
    "CorruptStore",
    "Cursor",
    "EventMeta",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidSettings",
    "InvalidStreamName",
    "NewEvent",
    "Page",
    "PayloadNotSerializable",
    "Settings",
    "StoreUnavailable",
    "StoredEvent",
    "StreamAppend",
    "Subscription",
    "load_settings",
    "open_store",
]
