"""Real local receivers for the senders: an HTTP server (a small ASGI app under uvicorn on a
free loopback port) standing in for Slack and webhooks, and an aiosmtpd SMTP server (plain,
STARTTLS or TLS, with a login) standing in for a mail server. Tests assert on what arrived."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "HttpReceiver", "Received", "SmtpReceiver", "free_port", "mail_parts", "self_signed", "serving_http", "serving_http_on",
    "serving_smtp", "wait_until",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Wait on a condition (never on time): poll `check` until it holds or fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        threading.Event().wait(0.01)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when it arrived."""
    wall: float
    """time.time() when it arrived."""


@dataclass
class HttpReceiver:
    """An ASGI app that records every request and answers with the planned statuses
    (per path, in order; 200 once a plan is used up), after an optional delay per path."""

    plans: dict[str, list[int]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    on_receive: Callable[[Received], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        item = Received(
            scope["method"], scope["path"],
            {k.decode().lower(): v.decode() for k, v in scope["headers"]}, body, time.monotonic(), time.time(),
        )
        with self._lock:
            self.received.append(item)
            plan = self.plans.get(item.path)
            status = plan.pop(0) if plan else 200
        if self.on_receive is not None:
            self.on_receive(item)
        delay = self.delays.get(item.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"planned failure"})

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]


@contextmanager
def serving_http(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port; yield its base URL."""
    with serving_http_on(app, free_port()) as url:
        yield url


@contextmanager
def serving_http_on(app: Any, port: int) -> Iterator[str]:
    """Run an ASGI app under uvicorn on loopback `port`; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 30, "HTTP receiver start")
        if not server.started:
            raise RuntimeError("the HTTP receiver did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def mail_parts(message: Any) -> dict[str, str]:
    """content type -> text of each part of an email (line ends as \\n)."""
    return {part.get_content_type(): part.get_payload(decode=True).decode().replace("\r\n", "\n")
            for part in message.walk() if not part.is_multipart()}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    return cert_path, key_path


class SmtpReceiver:
    """An aiosmtpd handler that keeps every message and every login it accepted."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username = username
        self.password = password
        self.messages: list[tuple[Envelope, Message]] = []
        self.logins: list[str] = []
        self.tls_sessions = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.original_content or b""
        with self._lock:
            self.messages.append((envelope, message_from_bytes(content)))
            transport = server.transport
            if session.ssl is not None or (transport is not None and transport.get_extra_info("ssl_object")):
                self.tls_sessions += 1
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and data.login.decode() == self.username and data.password.decode() == self.password:
            with self._lock:
                self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@contextmanager
def serving_smtp(
    receiver: SmtpReceiver, *, security: str = "none", cert: tuple[Path, Path] | None = None,
) -> Iterator[int]:
    """Run an SMTP server on a free loopback port (`none`, `starttls` or `tls`); yield the port."""
    kwargs: dict[str, Any] = {}
    ssl_context = None
    if security != "none":
        assert cert is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            ssl_context = context
    if receiver.username is not None:
        # Implicit TLS is invisible to aiosmtpd's session: it would hide AUTH unless told not to
        # require TLS for it, and it warns when AUTH is then required as well.
        kwargs.update(authenticator=receiver.authenticate, auth_required=security != "tls",
                      auth_require_tls=security == "starttls")
    port = free_port()
    controller = Controller(receiver, hostname="127.0.0.1", port=port, ssl_context=ssl_context, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
