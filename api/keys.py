"""API keys: created once, shown once, stored as a SHA-256 hash, revocable.

Why SHA-256 and not bcrypt: a key is 256 random bits, so nobody can brute-force its hash;
bcrypt's deliberate slowness protects low-entropy passwords and would cost every request
~100 ms, and its per-hash salt would rule out looking a key up by its hash (an index probe).

The table lives in the store's database under the migration component "api", so every server
process on that database sees a revocation at once (nothing is cached in memory).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Row,
    String,
    Table,
    select,
)

from ledgerflow.events.migrations import Migration, apply_migrations
from ledgerflow.events.transactions import write_connection

__all__ = ["ApiKey", "ApiKeys", "KeyNotFound", "Scope"]

_PREFIX = "lf_"

metadata = MetaData()
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("revoked", DateTime(timezone=True), nullable=True),
)


def _create(conn: Connection) -> None:
    api_keys.create(conn)


MIGRATIONS = (Migration(1, "api keys, stored as hashes", _create),)


class Scope(StrEnum):
    READ = "read"
    WORKER = "worker"
    """Read, append run events, and poll a work pool for runs (what `ledgerflow worker start` needs)."""
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        order = (Scope.READ, Scope.WORKER, Scope.WRITE, Scope.ADMIN)
        return order.index(self) >= order.index(needed)


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    scope: Scope
    created: datetime
    revoked: datetime | None


class KeyNotFound(LookupError):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    # SQLite's DateTime column hands back naive datetimes (stored as UTC).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scope=Scope(row.scope),
        created=_aware(row.created),
        revoked=_aware(row.revoked) if row.revoked is not None else None,
    )


class ApiKeys:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        apply_migrations(engine, "api", MIGRATIONS)

    def _write(self) -> Connection:
        return write_connection(self.engine)

    def create(self, name: str, scope: Scope | str) -> tuple[ApiKey, str]:
        """A new key: its record and the secret, which is never stored and never shown again."""
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise ValueError("a key's name must be 1-200 characters")
        secret = _PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=uuid.uuid4().hex[:12], name=name, scope=Scope(scope),
            created=datetime.now(UTC), revoked=None,
        )
        with self._write() as conn, conn.begin():
            conn.execute(api_keys.insert().values(**key.model_dump(), key_hash=_hash(secret)))
        return key, secret

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            return [_key(row) for row in conn.execute(select(api_keys).order_by(api_keys.c.created))]

    def revoke(self, key_id: str) -> ApiKey:
        with self._write() as conn, conn.begin():
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise KeyNotFound(f"no API key with id {key_id!r}")
            if row.revoked is None:
                conn.execute(
                    api_keys.update().where(api_keys.c.id == key_id).values(revoked=datetime.now(UTC))
                )
        return next(k for k in self.list() if k.id == key_id)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is; None for unknown or revoked keys."""
        if not secret.startswith(_PREFIX) or len(secret) > 200:
            return None
        query = select(api_keys).where(api_keys.c.key_hash == _hash(secret), api_keys.c.revoked.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _key(row) if row else None
