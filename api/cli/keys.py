"""`ledgerflow api-key create|ls|revoke`: keys live in the store's database, hashed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.remote import local_only, server_client
from ledgerflow.api.keys import ApiKeys, KeyNotFound, Scope
from ledgerflow.events import load_settings
from ledgerflow.projections.runner import engine_of

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[Scope, typer.Option(help="read, worker (read, run events, work pool polling), write or admin (everything).")] = Scope.READ,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    local_only("api-key create")
    with opened_store() as store:
        try:
            key, secret = ApiKeys(engine_of(store)).create(name, scope)
        except ValueError as exc:
            fail(str(exc))
    out.print(f"created key {key.id} ({key.name}, scope {key.scope}); it is shown only this once:")
    print(secret)


@app.command("ls")
def list_keys() -> None:
    """List keys (never their secrets)."""
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            keys = client.api_keys()
    else:
        with opened_store() as store:
            keys = ApiKeys(engine_of(store)).list()
    if not keys:
        out.print("no API keys yet; create one with `ledgerflow api-key create --name NAME`")
        return
    rows = table("ID", "SCOPE", "STATUS", "NAME", no_wrap=("ID",))
    for key in keys:
        status = f"[red]revoked {key.revoked:%Y-%m-%d %H:%M}[/]" if key.revoked else "[green]active[/]"
        rows.add_row(key.id, key.scope, status, escape(key.name))
    out.print(rows)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `api-key ls`).")]) -> None:
    """Revoke a key: every server refuses it from the next request on."""
    local_only("api-key revoke")
    with opened_store() as store:
        try:
            key = ApiKeys(engine_of(store)).revoke(key_id)
        except KeyNotFound as exc:
            fail(str(exc), "see `ledgerflow api-key ls`")
    out.print(f"revoked key {key.id} ({key.name})")
