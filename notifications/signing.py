"""Webhook signatures: HMAC-SHA256 over `"<timestamp>.<body>"` with the block's secret.

Each delivery carries `X-Ledgerflow-Timestamp: <unix seconds>` and
`X-Ledgerflow-Signature: sha256=<hex digest>`; a receiver recomputes the digest with the
shared secret (`verify`), compares in constant time, and refuses old timestamps (replays).
`X-Ledgerflow-Delivery` carries the delivery's idempotency key, the same on every retry.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

TIMESTAMP_HEADER = "X-Ledgerflow-Timestamp"
SIGNATURE_HEADER = "X-Ledgerflow-Signature"
DELIVERY_HEADER = "X-Ledgerflow-Delivery"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether `signature` is the signature of `body` at `timestamp`, made at most `tolerance`
    seconds from `now`."""
    try:
        when = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - when) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, when, body), signature)
