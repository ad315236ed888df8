"""Blocks: named credentials that actions and flow code refer to by name.

Three types: `slack-webhook` (an incoming-webhook URL), `smtp` (a mail server and its login)
and `webhook` (a URL, the secret that signs each delivery, extra headers). A block is stored
encrypted (notifications/secretbox.py) in the `notification_blocks` table, never in an event,
and shown only masked (`https://hooks.slack.com/…/XXXX`, `****`).

From flow code, as in Prefect:

    from ledgerflow.notifications import SlackWebhook
    SlackWebhook.load("ops-slack").notify("nightly ETL done")

With `LEDGERFLOW_API_URL` set, `load` returns a handle that asks the server to send
(`POST /api/blocks/{name}/notify`): the secret never leaves the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from sqlalchemy import Engine, select

from ledgerflow.events.model import utcnow
from ledgerflow.events.settings import Settings, load_settings
from ledgerflow.events.store import EventStore, open_store
from ledgerflow.events.transactions import engine_of, write_transaction
from ledgerflow.notifications.errors import (
    BlockError,
    BlockExists,
    BlockNotFound,
    DeliveryError,
    describe_validation,
)
from ledgerflow.notifications.secretbox import SecretBox
from ledgerflow.notifications.tables import blocks as blocks_table
from ledgerflow.notifications.tables import migrate

__all__ = [
    "BLOCK_TYPES",
    "Block",
    "BlockInfo",
    "BlockName",
    "BlockStore",
    "RemoteSlackWebhook",
    "SlackWebhook",
    "SmtpServer",
    "Webhook",
    "mask_url",
    "parse_block",
]

BlockName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
_MASK = "****"


def mask_url(url: str) -> str:
    """`https://hooks.slack.com/…/abcd`: scheme and host, and the last four characters."""
    parts = urlsplit(url)
    rest = url.split(parts.netloc, 1)[1] if parts.netloc else url
    tail = rest.rstrip("/")[-4:].lstrip("/")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…/{tail}"


def _http_url(value: SecretStr) -> SecretStr:
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    block_type: ClassVar[str]

    def masked(self) -> dict[str, Any]:
        """The block's fields with every secret masked: what the CLI and the API show."""
        raise NotImplementedError

    def revealed(self) -> dict[str, Any]:
        """Every field in clear: what gets encrypted."""
        def reveal(value: Any) -> Any:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, dict):
                return {k: reveal(v) for k, v in value.items()}
            return value

        return {name: reveal(getattr(self, name)) for name in type(self).model_fields}


class SlackWebhook(_Block):
    """A Slack incoming webhook (`https://hooks.slack.com/services/...`)."""

    block_type: ClassVar[str] = "slack-webhook"
    url: SecretStr

    _url = field_validator("url")(_http_url)

    def masked(self) -> dict[str, Any]:
        return {"url": mask_url(self.url.get_secret_value())}

    def notify(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Post `text` (and Slack layout `blocks`) to the webhook now; DeliveryError if refused."""
        payload: dict[str, Any] = {"text": text}
        if blocks is not None:
            payload["blocks"] = blocks
        try:
            response = httpx.post(self.url.get_secret_value(), json=payload, timeout=10.0)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Slack webhook unreachable: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"Slack webhook answered HTTP {response.status_code}: {response.text[:200]}")

    @classmethod
    def load(cls, name: str, settings: Settings | None = None) -> SlackWebhook | RemoteSlackWebhook:
        """The block `name`; through the API server when `LEDGERFLOW_API_URL` is set."""
        settings = settings or load_settings()
        if settings.api_url:
            return RemoteSlackWebhook(name, settings.api_url, settings.api_key)
        store = open_store(settings.store_url)
        try:
            block = BlockStore(engine_of(store), SecretBox.from_settings(settings)).get(name)
        finally:
            store.close()
        if not isinstance(block, SlackWebhook):
            raise BlockError(f"block {name!r} is a {block.block_type} block, not a slack-webhook")
        return block


class RemoteSlackWebhook:
    """A slack-webhook block kept on the API server: the server sends, the URL stays there."""

    def __init__(self, name: str, api_url: str, api_key: str | None = None) -> None:
        self.name = name
        self._api_url = api_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    def notify(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        body: dict[str, Any] = {"text": text}
        if blocks is not None:
            body["blocks"] = blocks
        try:
            response = httpx.post(f"{self._api_url}/api/blocks/{self.name}/notify", json=body,
                                  headers=self._headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"the API server cannot be reached: {type(exc).__name__}") from None
        if response.status_code == 404:
            raise BlockNotFound(f"no block named {self.name!r} on the server")
        if response.status_code >= 300:
            raise DeliveryError(f"the server could not send: HTTP {response.status_code}: {response.text[:300]}")


class SmtpServer(_Block):
    """An SMTP server and its login. `security`: `starttls` (upgrade a plain connection, port
    587 by default), `tls` (TLS from the start, port 465) or `none` (port 25)."""

    block_type: ClassVar[str] = "smtp"
    host: str = Field(min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    from_address: str | None = None
    """The sender; by default the username (if it is an address) or `ledgerflow@<host>`."""
    ca_file: str | None = None
    """A CA bundle to trust besides the system's (a private mail server's certificate)."""
    timeout: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("port") is None:
            security = values.get("security", "starttls")
            values = {**values, "port": {"starttls": 587, "tls": 465}.get(security, 25)}
        return values

    @model_validator(mode="after")
    def _login(self) -> SmtpServer:
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        return self

    @property
    def sender(self) -> str:
        if self.from_address:
            return self.from_address
        if self.username and "@" in self.username:
            return self.username
        return f"ledgerflow@{self.host}"

    def masked(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "username": self.username,
            "password": _MASK if self.password is not None else None, "security": self.security,
            "from_address": self.sender, "ca_file": self.ca_file,
        }


class Webhook(_Block):
    """Any HTTP endpoint. Each delivery is signed with `secret` (see notifications/signing.py)."""

    block_type: ClassVar[str] = "webhook"
    url: SecretStr
    secret: SecretStr
    headers: dict[str, SecretStr] = {}
    method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = "POST"
    timeout: float = Field(default=10.0, gt=0, le=300)

    _url = field_validator("url")(_http_url)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("a webhook secret must be at least 8 characters")
        return value

    def masked(self) -> dict[str, Any]:
        return {
            "url": mask_url(self.url.get_secret_value()), "secret": _MASK,
            "headers": {name: _MASK for name in self.headers}, "method": self.method,
        }


Block = SlackWebhook | SmtpServer | Webhook
BLOCK_TYPES: dict[str, type[SlackWebhook] | type[SmtpServer] | type[Webhook]] = {
    "slack-webhook": SlackWebhook, "smtp": SmtpServer, "webhook": Webhook,
}


def parse_block(block_type: str, fields: dict[str, Any]) -> Block:
    """A block of `block_type` from its fields; BlockError naming the bad field."""
    model = BLOCK_TYPES.get(block_type)
    if model is None:
        raise BlockError(f"unknown block type {block_type!r}: use one of {', '.join(BLOCK_TYPES)}")
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise BlockError(describe_validation(exc)) from None


class BlockInfo(BaseModel):
    """A block as shown: its name, type, dates and masked fields."""

    model_config = ConfigDict(frozen=True)
    name: str
    type: str
    created: datetime
    updated: datetime
    fields: dict[str, Any]


class BlockStore:
    """Blocks in the store's database, encrypted with `box`."""

    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self._box = box
        migrate(engine)

    @classmethod
    def of(cls, store: EventStore, box: SecretBox) -> BlockStore:
        return cls(engine_of(store), box)

    def create(self, name: str, block: Block) -> BlockInfo:
        _check_name(name)
        now = utcnow()
        token = self._box.encrypt(orjson.dumps(block.revealed()))
        with write_transaction(self.engine) as conn:
            if conn.execute(select(blocks_table.c.name).where(blocks_table.c.name == name)).first():
                raise BlockExists(f"a block named {name!r} exists; delete it first")
            conn.execute(blocks_table.insert().values(
                name=name, block_type=block.block_type, secret=token, created=now, updated=now,
            ))
        return BlockInfo(name=name, type=block.block_type, created=now, updated=now, fields=block.masked())

    def get(self, name: str) -> Block:
        row = self._row(name)
        plain = orjson.loads(self._box.decrypt(row.secret, f"block {name!r}"))
        return BLOCK_TYPES[row.block_type].model_validate(plain)

    def info(self, name: str) -> BlockInfo:
        row = self._row(name)
        return BlockInfo(name=name, type=row.block_type, created=row.created, updated=row.updated,
                         fields=self.get(name).masked())

    def list(self) -> list[BlockInfo]:
        with self.engine.connect() as conn:
            names = conn.execute(select(blocks_table.c.name).order_by(blocks_table.c.name)).scalars().all()
        return [self.info(name) for name in names]

    def delete(self, name: str) -> None:
        with write_transaction(self.engine) as conn:
            deleted = conn.execute(blocks_table.delete().where(blocks_table.c.name == name))
        if deleted.rowcount == 0:
            raise BlockNotFound(f"no block named {name!r}")

    def _row(self, name: str) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(blocks_table).where(blocks_table.c.name == name)).first()
        if row is None:
            raise BlockNotFound(f"no block named {name!r}")
        return row


def _check_name(name: str) -> None:
    class _Name(BaseModel):
        name: BlockName

    try:
        _Name(name=name)
    except ValidationError:
        raise BlockError(
            f"block name {name!r} must be 1-200 letters, digits, '.', '-' or '_', starting with a letter or digit"
        ) from None
