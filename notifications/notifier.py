"""The one-method protocol every sender implements, and the HTTP request the HTTP senders share.

`send(message, key)` delivers one rendered message (the `message` of an `action.triggered`
event) and returns details worth recording (an HTTP status); it raises DeliveryError, whose
`retryable` says whether trying again may help (a timeout, a 5xx, a 429) or not (a 404).
`key` is the delivery's idempotency key, the same on every attempt.

The HTTP senders use the dispatcher's shared aiohttp session (keep-alive connections): at a
thousand deliveries a second, httpx's async client spent several times the CPU per request.
Requests go through the proxy that `HTTP_PROXY` / `HTTPS_PROXY` name, except to hosts in
`NO_PROXY`; those variables are read once, at the first delivery (per request, reading them
costs about what the request does).
"""

from __future__ import annotations

import asyncio
import functools
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from ledgerflow.notifications.errors import DeliveryError

__all__ = ["Notifier", "environment_proxies", "request"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})


class Notifier(Protocol):
    async def send(self, message: Mapping[str, Any], key: str) -> dict[str, Any]: ...


async def request(
    session: aiohttp.ClientSession, method: str, url: str, *, what: str, body: bytes,
    headers: Mapping[str, str], timeout: float,
) -> dict[str, Any]:
    """Send one request; `{"status": ...}` for a 2xx, DeliveryError otherwise (retryable for
    408, 425, 429, 5xx and transport errors, whose message never repeats the secret URL)."""
    try:
        async with session.request(
            method, url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), proxy=_proxy_for(url),
        ) as response:
            text = await response.text(errors="replace")  # read to the end: the connection is kept for the next
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        detail = str(exc).replace(url, "<url>") or type(exc).__name__
        raise DeliveryError(f"{what} unreachable: {type(exc).__name__}: {detail}", retryable=True) from None
    if 200 <= status < 300:
        return {"status": status}
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    text = text[:300].strip()
    raise DeliveryError(f"{what} answered HTTP {status}" + (f": {text}" if text else ""), retryable=retryable)


_proxy_bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
"""NO_PROXY matching as urllib does it (public in CPython, missing from typeshed)."""


@functools.cache
def environment_proxies() -> dict[str, str]:
    """`{scheme: proxy URL, "no": hosts}` from the process's `*_PROXY` variables."""
    return urllib.request.getproxies_environment()


def _proxy_for(url: str) -> str | None:
    proxies = environment_proxies()
    if not proxies:
        return None
    parts = urlsplit(url)
    if _proxy_bypass(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme)
