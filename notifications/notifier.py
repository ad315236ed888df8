"""The one-method protocol every sender implements, and how an HTTP answer becomes an outcome.

`send(message, key)` delivers one rendered message (the `message` of an `action.triggered`
event) and returns details worth recording (an HTTP status); it raises DeliveryError, whose
`retryable` says whether trying again may help (a timeout, a 5xx, a 429) or not (a 404).
`key` is the delivery's idempotency key, the same on every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from ledgerflow.notifications.errors import DeliveryError

__all__ = ["Notifier", "check_response", "transport_error"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})


class Notifier(Protocol):
    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]: ...


def check_response(response: httpx.Response, what: str) -> dict[str, Any]:
    """`{"status": ...}` for a 2xx; DeliveryError otherwise (retryable for 408, 425, 429, 5xx)."""
    status = response.status_code
    if 200 <= status < 300:
        return {"status": status}
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    text = response.text[:300].strip()
    raise DeliveryError(f"{what} answered HTTP {status}" + (f": {text}" if text else ""), retryable=retryable)


def transport_error(exc: httpx.HTTPError, what: str, secret: str) -> DeliveryError:
    """A retryable DeliveryError that never repeats the (secret) URL."""
    detail = str(exc).replace(secret, "<url>") or type(exc).__name__
    return DeliveryError(f"{what} unreachable: {type(exc).__name__}: {detail}", retryable=True)
