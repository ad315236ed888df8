"""The event log's tables: one SQLAlchemy Core MetaData for SQLite and PostgreSQL.

Dialect differences are column variants and server defaults, never branches in queries:
- `position` is an identity column on PostgreSQL and `INTEGER PRIMARY KEY AUTOINCREMENT` on SQLite.
- `tx_id` defaults to the appending transaction's id on PostgreSQL (see events/postgres.py) and
  is always 0 on SQLite, so a cursor has the same shape on both.
- Times are `timestamptz` on PostgreSQL and integer microseconds since the epoch on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from collections.abc import Callable
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from ledgerflow.events.model import uuid_of_int

__all__ = [
    "UtcDateTime",
    "consumer_checkpoints",
    "events",
    "metadata",
    "schema_versions",
    "streams",
    "to_micros",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: how SQLite stores times."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class EventId(Uuid[UUID]):
    """`Uuid`, read back on SQLite (which keeps the 32 hex digits) without `UUID(hex)`'s
    parsing: ~3 us a row, and every event read has one."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], UUID | None] | None:
        if dialect.supports_native_uuid and self.native_uuid:
            return None  # the driver hands back UUIDs itself (PostgreSQL)

        def process(value: Any) -> UUID | None:
            return None if value is None else uuid_of_int(int(value.replace("-", ""), 16))

        return process


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: timestamptz on PostgreSQL, integer microseconds on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return to_micros(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return EPOCH + timedelta(microseconds=value)
        aware: datetime = value.astimezone(UTC)
        return aware


metadata = MetaData()
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, Identity(always=True), primary_key=True),
    Column(
        "tx_id",
        BigInteger(),
        nullable=False,
        server_default=text("0"),
    ),
    Column("id", EventId(), nullable=False),
    Column("stream", String(200), nullable=False),
    Column("stream_position", BigInteger(), nullable=False),
    Column("type", String(200), nullable=False),
    Column("occurred", UtcDateTime(), nullable=False),
    Column("recorded", UtcDateTime(), nullable=False),
    Column("data", Text(), nullable=False),
    Column("meta", Text(), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    UniqueConstraint("id", name="events_id_key"),
    UniqueConstraint("stream", "stream_position", name="events_stream_position_key"),
    Index("events_order_idx", "tx_id", "position"),
    sqlite_autoincrement=True,
)

streams = Table(
    "streams",
    metadata,
    Column("stream", String(200), primary_key=True),
    Column("version", BigInteger(), nullable=False),
    Column("head_hash", LargeBinary(32), nullable=False),
)

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("component", String(100), primary_key=True),
    Column("version", Integer(), nullable=False),
)

consumer_checkpoints = Table(
    "consumer_checkpoints",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("cursor", String(60), nullable=False),
    Column("updated", UtcDateTime(), nullable=False),
)
"""How far each durable consumer has handled the log (events/checkpoints.py)."""
