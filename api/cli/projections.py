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
from ledgerflow.events import Cursor, EventStore, EventStoreError
from ledgerflow.projections.runner import ProjectionRunner

__all__ = ["app"]

app = typer.Typer(help="Run, rebuild and inspect the projections (run views, lineage, analytics).",
                  no_args_is_help=True)


@app.command()
def run() -> None:
    """Keep the projections up to date with the log until interrupted."""
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
    with opened_store() as store:
        runner = ProjectionRunner(store)
        head = store.head()
        rows = table("PROJECTION", "GENERATION", "VERSION", "CHECKPOINT", "LOG HEAD", "REBUILDING")
        for name, checkpoint in runner.checkpoints().items():
            rows.add_row(name, str(checkpoint.generation), str(checkpoint.version), str(checkpoint.cursor),
                         head, str(checkpoint.building_generation or "-"))
        out.print(rows)
