"""Serialisation of events to the bytes the log stores, and the hash chain over them.

Payloads are stored as the exact orjson text they were written as, so the chain hash covers
the stored bytes and `verify` needs no canonicalisation that a JSON type could defeat.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from functools import lru_cache
from math import isfinite
from typing import Any

import orjson

from ledgerflow.events.errors import EventTooLarge, InvalidStreamName, PayloadNotSerializable
from ledgerflow.events.model import EventMeta, NewEvent

__all__ = [
    "GENESIS_HASH",
    "MAX_EVENT_BYTES",
    "EncodedEvent",
    "chain_hash",
    "check_stream_name",
    "decode",
    "encode",
]

MAX_EVENT_BYTES = 1024 * 1024
"""An event's data and meta together may take at most 1 MiB once serialised."""

GENESIS_HASH = b"\x00" * 32
STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}")


def check_stream_name(stream: str) -> str:
    if not isinstance(stream, str) or not STREAM_NAME.fullmatch(stream):
        raise InvalidStreamName(
            f"stream name {stream!r} must be 1-200 characters: letters, digits and . _ : @ / + -, "
            "starting with a letter or digit (e.g. 'flow-run-<uuid>')"
        )
    return stream


class EncodedEvent:
    """A NewEvent with its payload serialised, ready to be chained and inserted."""

    __slots__ = ("event", "data", "meta")

    def __init__(self, event: NewEvent, data: str, meta: str) -> None:
        self.event = event
        self.data = data
        self.meta = meta


def encode(event: NewEvent, index: int = 0) -> EncodedEvent:
    try:
        data = orjson.dumps(event.data)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise PayloadNotSerializable(
            f"event {index} ({event.type}): data is not JSON-serialisable: {exc}"
        ) from None
    if b"null" in data and _has_non_finite(event.data):
        # orjson writes NaN and infinities as null (hence the cheap test first): refuse them.
        raise PayloadNotSerializable(f"event {index} ({event.type}): data holds NaN or an infinity, which JSON cannot")
    meta = _meta_json(event.meta)
    size = len(data) + len(meta)
    if size > MAX_EVENT_BYTES:
        raise EventTooLarge(
            f"event {index} ({event.type}) is {size} bytes serialised; the limit is "
            f"{MAX_EVENT_BYTES} bytes (store large results and artifacts outside the log)"
        )
    return EncodedEvent(event, data.decode(), meta)


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return not isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    return False


@lru_cache(maxsize=4096)
def _meta_json(meta: EventMeta) -> str:
    """A run writes all its events with one meta: serialise it once."""
    return orjson.dumps(meta.as_json()).decode()


def decode(text: str) -> Any:
    return orjson.loads(text)


def chain_hash(
    previous: bytes,
    *,
    event_id: str,
    stream: str,
    stream_position: int,
    type: str,
    occurred: datetime,
    data: str,
    meta: str,
) -> bytes:
    """sha256 over the previous hash of the stream and everything the writer said."""
    header = orjson.dumps([event_id, stream, stream_position, type, occurred.isoformat()])
    digest = hashlib.sha256(previous)
    digest.update(header)
    digest.update(b"\x1f")
    digest.update(data.encode())
    digest.update(b"\x1f")
    digest.update(meta.encode())
    return digest.digest()
