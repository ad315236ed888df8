"""The notifications component's tables in the store's database, created through
`ledgerflow.events.migrations` under the component name "notifications".

- `notification_blocks`: credentials, one row per block; everything but the name and the type
  is one Fernet token (notifications/secretbox.py), so no secret is ever stored in clear.
- `automation_engine_state`: the automation engine's trigger windows, kept beside its log
  checkpoint so a restart goes on with the windows it had, and which process holds the
  engine's lease (notifications/engine.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table, Text

from ledgerflow.events.migrations import Migration, apply_migrations
from ledgerflow.events.tables import UtcDateTime

__all__ = ["MIGRATIONS", "blocks", "engine_state", "migrate"]

metadata = MetaData()

blocks = Table(
    "notification_blocks",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("block_type", String(40), nullable=False),
    Column("secret", Text(), nullable=False),
    Column("created", UtcDateTime(), nullable=False),
    Column("updated", UtcDateTime(), nullable=False),
)

engine_state = Table(
    "automation_engine_state",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("cursor", String(100), nullable=False),
    Column("revision", BigInteger(), nullable=False),
    Column("state", Text(), nullable=False),
    Column("updated", UtcDateTime(), nullable=False),
    Column("owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
)


def _create(conn: Connection) -> None:
    blocks.create(conn)
    engine_state.create(conn)


MIGRATIONS = (Migration(1, "notification blocks and the automation engine's state", _create),)


def migrate(engine: Engine) -> None:
    """Create or upgrade the tables."""
    apply_migrations(engine, "notifications", MIGRATIONS)
