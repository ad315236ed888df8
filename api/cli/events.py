"""`ledgerflow events ...`: tail, follow, append and verify the event log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from ledgerflow.api.cli.remote import remote_tail, server_client
from ledgerflow.api.cli.console import describe, err, fail, out
from ledgerflow.api.cli.context import opened_store
from ledgerflow.events import CorruptStore, EventStoreError, NewEvent, StoredEvent, StreamAppend, load_settings
from ledgerflow.events.reserved import ReservedStreamViolation, check_appends
from ledgerflow.runtime.remote import HttpEventLog
from ledgerflow.runtime.spool import Spool

app = typer.Typer(help="Read, follow, append to and verify the event log.", no_args_is_help=True)


def _line(event: StoredEvent) -> str:
    when = event.occurred.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    data = orjson.dumps(event.data).decode()
    if len(data) > 160:
        data = data[:157] + "..."
    return (
        f"[dim]{event.cursor:>12}[/] {when} [bold cyan]{event.type:<22}[/] "
        f"[magenta]{event.stream}[/]#{event.stream_position} {escape(data)}"
    )


@app.command()
def tail(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Only these types; '*' is a wildcard (task-run.*)."),
    ] = None,
    after: Annotated[str | None, typer.Option(help="Start after this cursor.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many of the newest to show.")] = 20,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the newest events (or those after --after), then follow with --follow."""
    if limit < 1:
        fail(f"--limit must be at least 1, not {limit}")
    settings = load_settings()
    if settings.api_url:
        remote_tail(settings, follow, type_, after, limit, lambda event: _print(event, json))
        return
    with opened_store() as store:
        try:
            if after is None:
                events = store.read_last(limit, types=type_)
            else:
                events = store.read_all(after=after, limit=limit, types=type_)
            for event in events:
                _print(event, json)
            if follow:
                start = events[-1].cursor if events else (after or store.head())
                with store.subscribe(after=start, types=type_) as subscription:
                    for event in subscription:
                        _print(event, json)
        except EventStoreError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def _print(event: StoredEvent, json: bool) -> None:
    if json:
        print(event.model_dump_json(), flush=True)
    else:
        out.print(_line(event))


@app.command()
def append(
    stream: Annotated[str, typer.Argument(help="Stream name, e.g. 'demo-1'.")],
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Event type, e.g. 'demo.started'.")],
    data: Annotated[str, typer.Argument(help="JSON object payload.")] = "{}",
) -> None:
    """Append one event to a stream."""
    try:
        payload = json.loads(data)  # unlike orjson, keeps an integer past 64 bits exact for the store to refuse
    except json.JSONDecodeError as exc:
        fail(f"DATA is not valid JSON: {exc}", "pass a JSON object, e.g. '{\"rows\": 3}'")
    if not isinstance(payload, dict):
        fail("DATA must be a JSON object", "pass a JSON object, e.g. '{\"rows\": 3}'")
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            out.print(_line(client.append(stream, type_, payload)))
        return
    with opened_store() as store:
        try:
            appends = check_appends(store, [StreamAppend(stream, [NewEvent(type=type_, data=payload)])])
            stored = store.append_streams(appends)
        except ReservedStreamViolation as exc:
            fail(describe(exc), "the product writes its own streams: change a run's state with `ledgerflow flow-run cancel` / `resume` / `replay`")
        except (EventStoreError, ValueError) as exc:
            fail(describe(exc))
    out.print(_line(stored[0]))


@app.command()
def verify() -> None:
    """Check every stream's hash chain; exit 1 at the first broken link."""
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            _report_verification(client.verify())
        return
    with opened_store() as store, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("verifying", total=None)
        report = store.verify(
            progress=lambda n: progress.update(task, description=f"verified {n:,} events")
        )
    _fail_on_damage(report.damage)
    if report.first_break is None:
        out.print(
            f"[green]intact:[/] {report.events_checked:,} events in "
            f"{report.streams_checked:,} streams"
        )
        return
    broken = report.first_break
    err.print(
        f"[bold red]broken:[/] stream {broken.stream!r} at position {broken.stream_position}: "
        f"{broken.reason} ({report.events_checked:,} events verified before it)"
    )
    raise typer.Exit(1)


def _fail_on_damage(damage: Sequence[str]) -> None:
    if damage:
        more = len(damage) - 1
        fail(damage[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""), CorruptStore.hint)


def _report_verification(report: dict[str, Any]) -> None:
    """What the server's `GET /api/events/verify` found, said as the local verify says it."""
    _fail_on_damage(report.get("damage", []))
    broken = report["first_break"]
    if broken is None:
        out.print(f"[green]intact:[/] {report['events_checked']:,} events in {report['streams_checked']:,} streams")
        return
    err.print(
        f"[bold red]broken:[/] stream {broken['stream']!r} at position {broken['stream_position']}: "
        f"{broken['reason']} ({report['events_checked']:,} events verified before it)"
    )
    raise typer.Exit(1)


@app.command()
def push() -> None:
    """Send the events that remote runs kept in the spool while the server was unreachable."""
    settings = load_settings()
    if not settings.api_url:
        fail("`events push` sends the spool to an API server, and LEDGERFLOW_API_URL is not set",
             "set LEDGERFLOW_API_URL (and LEDGERFLOW_API_KEY) to the server's address")
    spool = Spool.in_home(settings.home)
    log = HttpEventLog.impatient(settings.api_url, settings.api_key)
    try:
        report = spool.forward(log)
    finally:
        log.close()
    out.print(f"delivered {report.delivered} events")
    if report.refused:
        err.print(f"[red]the server refused {report.refused} events as invalid; they are kept in {spool.refused_path}[/]")
    if report.waiting:
        fail(f"{report.waiting} events still wait in {spool.path}: {report.error}",
             f"is the server at {settings.api_url} running, and may LEDGERFLOW_API_KEY write?")
    if report.refused:
        raise typer.Exit(1)
