"""`ledgerflow concurrency-limit create NAME N | ls | inspect NAME | delete NAME`.

NAME is a task tag (task runs carrying it wait for a slot) or a global limit for
`concurrency()` / `rate_limit()`. Works on the embedded store, and through the server's
`/api/concurrency-limits` when `LEDGERFLOW_API_URL` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Protocol

import httpx
import orjson
import typer
from rich.markup import escape

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import store_or_server
from ledgerflow.api.concurrency_limits import ConcurrencyLimitOut, limit_out
from ledgerflow.events import EventStore, EventStoreError, InvalidEvent
from ledgerflow.events.concurrency_limits import LimitNotFound, create_limit, delete_limit, list_limits, read_limit

__all__ = ["app"]

app = typer.Typer(help="Create, list and delete concurrency limits (task tags and global limits).", no_args_is_help=True)


class Backend(Protocol):
    def create(self, name: str, limit: int, decay: float) -> ConcurrencyLimitOut: ...
    def list(self) -> list[ConcurrencyLimitOut]: ...
    def get(self, name: str) -> ConcurrencyLimitOut: ...
    def delete(self, name: str) -> None: ...


class _Local:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def create(self, name: str, limit: int, decay: float) -> ConcurrencyLimitOut:
        return limit_out(create_limit(self.store, name, limit, decay, actor="cli"))

    def list(self) -> list[ConcurrencyLimitOut]:
        return [limit_out(state) for state in list_limits(self.store)]

    def get(self, name: str) -> ConcurrencyLimitOut:
        state = read_limit(self.store, name)
        if not state.exists:
            raise LimitNotFound(name)
        return limit_out(state)

    def delete(self, name: str) -> None:
        delete_limit(self.store, name, actor="cli")


class _Remote:
    def __init__(self, url: str, key: str | None) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60.0)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, "/api/concurrency-limits" + path, json=body)
        except httpx.TransportError as exc:
            raise EventStoreError(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = str(orjson.loads(response.content)["detail"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = response.text[:200]
            if response.status_code == 404:
                raise LimitNotFound(path.strip("/"))
            raise InvalidEvent(detail)
        return orjson.loads(response.content)

    def create(self, name: str, limit: int, decay: float) -> ConcurrencyLimitOut:
        body = {"name": name, "limit": limit, "slot_decay_per_second": decay}
        return ConcurrencyLimitOut.model_validate(self._call("POST", "", body))

    def list(self) -> list[ConcurrencyLimitOut]:
        return [ConcurrencyLimitOut.model_validate(item) for item in self._call("GET", "")]

    def get(self, name: str) -> ConcurrencyLimitOut:
        return ConcurrencyLimitOut.model_validate(self._call("GET", f"/{name}"))

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/{name}")


@contextmanager
def backend() -> Iterator[Backend]:
    with store_or_server(_Remote, _Local, missing=LimitNotFound, listing="ledgerflow concurrency-limit ls") as chosen:
        yield chosen


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A task tag, or the name concurrency()/rate_limit() use")],
    limit: Annotated[int, typer.Argument(help="How many slots may be held at once", min=0)],
    slot_decay_per_second: Annotated[float, typer.Option(
        "--slot-decay-per-second", min=0.0, help="For rate_limit(): slots freed per second")] = 0.0,
) -> None:
    """Create a concurrency limit, or change the size of one that exists."""
    with backend() as limits:
        shown = limits.create(name, limit, slot_decay_per_second)
    out.print(f"concurrency limit [bold]{escape(shown.name)}[/]: {shown.limit} slot(s)"
              + (f", decaying {shown.slot_decay_per_second}/s" if shown.slot_decay_per_second else ""))


@app.command("ls")
def list_() -> None:
    """Every limit: its size, the slots in use and who holds them."""
    with backend() as limits:
        found = limits.list()
    shown = table("name", "limit", "in use", "decay/s", "holders", right=("limit", "in use", "decay/s"))
    for item in found:
        shown.add_row(escape(item.name), str(item.limit), f"{item.active_slots:g}",
                      f"{item.slot_decay_per_second:g}" if item.slot_decay_per_second else "-",
                      escape(", ".join(item.holders)) or "-")
    out.print(shown if found else "no concurrency limits (create one with: ledgerflow concurrency-limit create NAME N)")


@app.command()
def inspect(name: Annotated[str, typer.Argument(help="The limit's name")]) -> None:
    """One limit as JSON."""
    with backend() as limits:
        shown = limits.get(name)
    out.print_json(shown.model_dump_json())


@app.command()
def delete(name: Annotated[str, typer.Argument(help="The limit's name")]) -> None:
    """Delete a limit: runs and blocks that used it are no longer limited."""
    with backend() as limits:
        limits.delete(name)
    out.print(f"deleted concurrency limit [bold]{escape(name)}[/]")
