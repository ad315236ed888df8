"""What keeps a local server safe to leave running while its user browses the web.

With auth off (the loopback default), any page the user visits could otherwise write to the
log: a `<form enctype="text/plain">` or a `fetch(..., {mode: "no-cors"})` POST needs no CORS
preflight (CSRF), and a DNS name the attacker rebinds to 127.0.0.1 makes the page itself
same-origin with the server (DNS rebinding). Four layers, all pure ASGI:

    TrustedHostMiddleware   a Host header not on the allow-list -> 400 (DNS rebinding)
    CORSMiddleware          preflights: closed unless LEDGERFLOW_CORS_ORIGINS allows an origin
    OriginGuard             a write, or a WebSocket handshake, from a browser origin that is
                            neither allowed nor the server's own -> 403 (CSRF)
    JsonWrites              a write whose body is not application/json -> 415; JSON is not a
                            type a page may send cross-origin without a preflight

Clients that are not browsers (the CLI, the runtime's HTTP sink, curl) send no Origin header
and JSON bodies, so they pass every layer.
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.api.http.settings import ApiSettings

__all__ = ["JsonWrites", "OriginGuard", "install_security"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = "application/json"
_WS_FORBIDDEN = 1008  # policy violation; before the handshake completes the client sees HTTP 403


class OriginGuard:
    """Refuses state-changing requests and WebSocket handshakes from a disallowed browser origin.

    A browser names the page's origin in `Origin` on every cross-origin POST and every
    WebSocket handshake. Allowed: the configured origins, and the server's own origin (the
    Origin's host[:port] is the request's Host, which the Host check already vouched for)."""

    def __init__(self, app: ASGIApp, allowed_origins: Collection[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)
        self.allow_any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] in WRITE_METHODS)
        if guarded and not self.allow_any:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._allowed(origin, headers.get("host", "")):
                await self._refuse(scope, receive, send, origin)
                return
        await self.app(scope, receive, send)

    def _allowed(self, origin: str, host: str) -> bool:
        if origin in self.allowed:
            return True
        scheme, sep, netloc = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and netloc.lower() == host.lower()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        if scope["type"] == "websocket":
            await WebSocketClose(_WS_FORBIDDEN, "origin not allowed")(scope, receive, send)
            return
        detail = f"requests from the web page at {origin[:100]} are not allowed; list its origin in LEDGERFLOW_CORS_ORIGINS"
        await OrjsonResponse({"detail": detail}, 403)(scope, receive, send)


class JsonWrites:
    """415 for a write request whose body is not `application/json`; a request without a body
    (and without a Content-Type), like a cancel, passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS:
            headers = Headers(scope=scope)
            kind = headers.get("content-type")
            if kind is None:
                refused = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            else:
                refused = kind.partition(";")[0].strip().lower() != _JSON
            if refused:
                detail = f"a request body must be JSON: send 'Content-Type: {_JSON}'"
                await OrjsonResponse({"detail": detail}, 415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_security(app: FastAPI, api: ApiSettings) -> None:
    """Add the four layers; the Host check ends up outermost."""
    app.add_middleware(JsonWrites)
    app.add_middleware(OriginGuard, allowed_origins=api.cors_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=api.cors_origins,
        allow_methods=("GET", "POST"),
        allow_headers=("authorization", "content-type", "last-event-id", "x-api-key"),
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=api.trusted_hosts, www_redirect=False)
