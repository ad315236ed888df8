"""Errors raised by the event log.

    EventStoreError
    ├── ConcurrencyConflict   the stream's version is not the one the writer expected
    ├── InvalidEvent          bad input: nothing of the batch was written
    │   ├── InvalidStreamName
    │   ├── PayloadNotSerializable
    │   ├── EventTooLarge
    │   └── InvalidBackup     an export file that cannot be imported (names the line)
    ├── InvalidCursor         a cursor string that no store handed out
    ├── StoreUnavailable      the database cannot be reached
    │   └── CorruptStore      the database file or its pages are damaged (restore a backup)
    └── CorruptEvent          a stored row that cannot be decoded

Backends translate driver errors into these; callers never see SQLAlchemy or psycopg errors.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyConflict",
    "CorruptEvent",
    "CorruptStore",
    "EventStoreError",
    "EventTooLarge",
    "InvalidBackup",
    "InvalidCursor",
    "InvalidEvent",
    "InvalidStreamName",
    "PayloadNotSerializable",
    "StoreUnavailable",
]


class EventStoreError(Exception):
    """Base of every error the event log raises."""


class ConcurrencyConflict(EventStoreError):
    def __init__(self, stream: str, expected: int | str, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, the writer expected {expected}"
        )


class InvalidEvent(EventStoreError, ValueError):
    """The batch was refused as a whole; nothing of it was written."""


class InvalidStreamName(InvalidEvent):
    pass


class PayloadNotSerializable(InvalidEvent):
    pass


class EventTooLarge(InvalidEvent):
    pass


class InvalidBackup(InvalidEvent):
    pass


class InvalidCursor(EventStoreError, ValueError):
    pass


class StoreUnavailable(EventStoreError):
    pass


class CorruptEvent(EventStoreError):
    pass


class CorruptStore(StoreUnavailable):
    """The database itself is damaged: its file, pages or indexes cannot be read."""

    hint = (
        "restore a backup into a new database with `ledgerflow events import BACKUP.jsonl` "
        "(backups come from `ledgerflow events export > BACKUP.jsonl`); `ledgerflow events verify` lists the damage"
    )
