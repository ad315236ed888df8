"""The event envelope: what a writer hands to the store and what the store hands back.

A `NewEvent` is what a writer builds; the store adds the stream, the global and per-stream
positions, its own clock, the chain hash and the cursor, and returns a `StoredEvent`.
Payloads (`data`) are JSON objects; their shape per event type is the business of the type.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple, TypeVar
from uuid import UUID, SafeUUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "ANY",
    "NO_STREAM",
    "EventMeta",
    "ExpectedVersion",
    "NewEvent",
    "StoredEvent",
    "StreamAppend",
    "new_id",
    "trusted",
    "uuid_of_int",
    "utcnow",
]

ANY = "any"
"""Expected version: append whatever the stream's version is."""
NO_STREAM = "no stream"
"""Expected version: the stream must not exist yet."""

ExpectedVersion = int | str

_random_bits = random.getrandbits
EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> UUID:
    """A time-ordered UUIDv7 (RFC 9562): ids sort by creation, which keeps indexes compact.

    The random bits come from `random`, not `os.urandom` (20 us a call on some VMs): ids must be
    unique, not unguessable, and `random` is reseeded in a forked child.
    """
    millis = time.time_ns() // 1_000_000
    rand = _random_bits(74)
    return uuid_of_int((millis & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | (rand & (2**62 - 1)))


def uuid_of_int(value: int) -> UUID:
    """`UUID(int=value)` for a value known to be in range, without its argument checks (~3 us:
    runs make an id for every task run and event, and reads decode one per event)."""
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", value)
    object.__setattr__(uuid, "is_safe", SafeUUID.unknown)
    return uuid


def _event_type(value: str) -> str:
    if not EVENT_TYPE.fullmatch(value):
        raise ValueError(
            f"event type {value!r} must be 1-200 letters, digits, '.', '-' or '_' "
            "and start with a letter or digit"
        )
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("occurred must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


EventType = Annotated[str, AfterValidator(_event_type)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


M = TypeVar("M", bound=BaseModel)


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` from complete, already valid field values, without validation.

    `model_construct` spends ~10 us per call on defaults and bookkeeping; the append and run
    paths build every event this way, with every field given.
    """
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


class EventMeta(BaseModel):
    """Who and what caused an event: the root flow run, the event before it, the actor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    actor: str | None = None

    def as_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}


NO_META = EventMeta()


class NewEvent(BaseModel):
    """An event a writer wants appended. `id` is the idempotency key: choose it once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    id: UUID = Field(default_factory=new_id)
    meta: EventMeta = NO_META
    occurred: AwareDatetime = Field(default_factory=utcnow)


class StoredEvent(BaseModel):
    """An event as the log holds it."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    type: str
    stream: str
    occurred: datetime
    data: dict[str, Any]
    meta: EventMeta
    position: int
    stream_position: int
    recorded: datetime
    hash: str
    cursor: str


class StreamAppend(NamedTuple):
    """One stream's part of a multi-stream append."""

    stream: str
    events: Sequence[NewEvent]
    expected_version: ExpectedVersion = ANY
