"""The runtime's log when `LEDGERFLOW_API_URL` is set: batches go to `POST /api/events`; a
run's stream is read from `GET /api/streams/{stream}`, the feed from `GET /api/events`.

Network errors and 5xx replies are retried with exponential backoff: appends are idempotent
by event id, so a batch whose reply was lost is simply sent again. Refusals come back as the
store's own errors (409 ConcurrencyConflict, 422 InvalidEvent), exactly as an embedded store
would raise them; a server that stays unreachable ends in StoreUnavailable.

This module imports `events` only (never `api`): the wire format is the API's public contract.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from ledgerflow.events import (
    ConcurrencyConflict,
    Cursor,
    EventStoreError,
    InvalidEvent,
    Page,
    PayloadNotSerializable,
    StoredEvent,
    StoreUnavailable,
    StreamAppend,
)
from ledgerflow.runtime.spool import encode_appends

__all__ = ["HttpEventLog", "WriteRefused"]

_APPENDING_SCOPES = ("worker", "write", "admin")
"""The API key scopes that may append events (a worker's key does: its runs' events)."""
_KEY_HINT = "create one with `ledgerflow api-key create --name NAME --scope write` and set LEDGERFLOW_API_KEY"


class WriteRefused(EventStoreError):
    """The server will not take this process's events: no key, an unknown or revoked key, or
    a key whose scope is read."""


class HttpEventLog:
    """The store's `append_streams`, `read_stream`, `read_page` and `head` over HTTP, with the
    store's signatures, return values and errors."""

    def __init__(
        self,
        api_url: str,
        api_key: str | None = None,
        *,
        attempts: int = 10,
        first_backoff: float = 0.05,
        max_backoff: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        # Plain http needs no TLS context: loading the CA bundle for one costs ~0.2 s of CPU,
        # in every run process of a worker.
        verify = api_url.startswith("https:")
        self._client = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=timeout, verify=verify)
        self._attempts = attempts
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._primed: dict[str, list[StoredEvent]] = {}

    @classmethod
    def impatient(cls, api_url: str, api_key: str | None = None) -> HttpEventLog:
        """One that gives up within about a second: for a writer with a spool to fall back on."""
        return cls(api_url, api_key, attempts=5, first_backoff=0.05, max_backoff=0.4)

    def append_streams(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        try:
            body = encode_appends(appends)
        except TypeError as exc:
            raise PayloadNotSerializable(f"an event's data is not JSON: {exc}") from exc
        reply = self._post(body)
        return [StoredEvent.model_validate(event) for event in reply["events"]]

    def prime(self, streams: dict[str, list[StoredEvent]]) -> None:
        """The next whole read of each of these streams returns these events without a request
        (a worker hands its run's process the streams the server sent with the run); what an
        earlier call primed and nobody read is forgotten."""
        self._primed = dict(streams)

    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        if from_version == 1 and limit is None and not types and stream in self._primed:
            return self._primed.pop(stream)
        found: list[StoredEvent] = []
        while True:
            page = min(5000, limit - len(found)) if limit is not None else 5000
            reply = self._request("GET", f"/api/streams/{quote(stream, safe='')}",
                                  params={"from_version": from_version, "limit": page, "type": list(types or [])})
            events = [StoredEvent.model_validate(e) for e in reply["events"]]
            found += events
            if len(events) < page or (limit is not None and len(found) >= limit):
                return found
            from_version = events[-1].stream_position + 1

    def read_page(
        self, after: str | Cursor | None = None, limit: int = 1000, types: Sequence[str] | None = None
    ) -> Page:
        params: dict[str, Any] = {"limit": min(limit, 5000), "type": list(types or [])}
        if after is not None:
            params["after"] = str(after)
        reply = self._request("GET", "/api/events", params=params)
        return Page([StoredEvent.model_validate(e) for e in reply["events"]], reply["next_after"])

    def head(self) -> str:
        return str(self._request("GET", "/health")["head"])

    def check_write_access(self) -> bool:
        """Before a run: whether the server answers (False: it does not, the run's events will
        wait in the spool); raise WriteRefused at once if its key may not append events."""
        try:
            response = self._client.get("/api/whoami", timeout=5.0)
        except httpx.TransportError:
            return False
        if response.status_code >= 500:
            return False
        if response.status_code in (401, 403):
            raise WriteRefused(f"the server at {self._client.base_url} refused the API key ({_detail(response)}); {_KEY_HINT}")
        if response.status_code != 200:
            return True  # a server without /api/whoami: its answer to the first append will tell
        who = orjson.loads(response.content)
        if who.get("scope") not in _APPENDING_SCOPES:
            raise WriteRefused(
                f"the API key {who.get('name')!r} may not write events (scope {who.get('scope')}); {_KEY_HINT}"
            )
        return True

    def _post(self, body: bytes) -> dict[str, Any]:
        return self._request("POST", "/api/events", content=body)

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        backoff = self._first_backoff
        problem = "no attempt made"
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                result: dict[str, Any] = orjson.loads(response.content)
                return result
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {_detail(response)}"
                continue
            _raise(response)
        raise StoreUnavailable(
            f"the API server at {self._client.base_url} did not answer {method} {path} after "
            f"{self._attempts} attempts ({problem})"
        )

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(orjson.loads(response.content).get("detail", response.text))
    except (orjson.JSONDecodeError, AttributeError):
        return response.text[:200]


def _raise(response: httpx.Response) -> None:
    detail = _detail(response)
    if response.status_code == 409:
        body = orjson.loads(response.content)
        raise ConcurrencyConflict(body.get("stream", "?"), body.get("expected", "?"), body.get("actual", -1))
    if response.status_code in (400, 413, 422):
        raise InvalidEvent(detail)
    raise EventStoreError(f"the API server refused the request (HTTP {response.status_code}): {detail}")
