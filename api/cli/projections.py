"""`ledgerflow projections ...`: run the projections, rebuild them, see how far they are."""

from __future__ import annotations

import threading
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.remote import local_only, server_client
from ledgerflow.events import Cursor, EventStore, EventStoreError, load_settings
from ledgerflow.projections.runner import ProjectionRunner

__all__ = ["app"]

app = typer.Typer(help="Run, rebuild and inspect the projections (run views, lineage, analytics).",
                  no_args_is_help=True)


@app.command()
def run() -> None:
    """Keep the projections up to date with the log until interrupted."""
    local_only("projections run")
    with opened_store() as store:
        runner = ProjectionRunner(store)
        stop = threading.Event()
        applied = [0]

        def report(count: int) -> None:
            applied[0] += count

        out.print("[dim]following the log; Ctrl-C to stop[/]")
        try:
            runner.run(stop, on_batch=report)
        except KeyboardInterrupt:
            stop.set()
        except EventStoreError as exc:
            fail(str(exc))
        out.print(f"applied {applied[0]} events")


@app.command()
def rebuild(
    name: Annotated[str | None, typer.Argument(help="runs, lineage or analytics (default: all).")] = None,
) -> None:
    """Rebuild projections from the whole log into new tables, then swap them in; queries keep
    reading the old tables meanwhile."""
    local_only("projections rebuild")
    with opened_store() as store:
        try:
            _rebuild(store, name)
        except EventStoreError as exc:
            fail(str(exc), getattr(exc, "hint", None))


def _rebuild(store: EventStore, name: str | None) -> None:
    runner = ProjectionRunner(store)
    names = list(runner.projections) if name is None else [name]
    if name is not None and name not in runner.projections:
        fail(f"no projection named {name!r}", f"use one of {', '.join(runner.projections)}")
    head = Cursor.parse(store.head()).position
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[read]:>10,} events"), TimeElapsedColumn(), console=out,
    ) as progress:
        task = progress.add_task(", ".join(names), total=head or 1, read=0)

        def advance(read: int, cursor: Cursor) -> None:
            progress.update(task, completed=min(cursor.position, head), read=read)

        read = runner.rebuild(names, advance)
        progress.update(task, completed=head or 1, read=read)


@app.command()
def status() -> None:
    """Each projection's generation, version and checkpoint."""
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            reply = client.projections_status()
        head = reply["head"]
        found = [(p["name"], p["generation"], p["version"], p["checkpoint"], p["building_generation"])
                 for p in reply["projections"]]
    else:
        with opened_store() as store:
            head = store.head()
            found = [(name, c.generation, c.version, str(c.cursor), c.building_generation)
                     for name, c in ProjectionRunner(store).checkpoints().items()]
    rows = table("PROJECTION", "GENERATION", "VERSION", "CHECKPOINT", "LOG HEAD", "REBUILDING")
    for name, generation, version, checkpoint, building in found:
        rows.add_row(name, str(generation), str(version), checkpoint, head, str(building or "-"))
    out.print(rows)
