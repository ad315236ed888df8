"""`ledgerflow events export` and `ledgerflow events import`: backup, restore and migration.

Both work on the database itself (LEDGERFLOW_DATABASE_URL), never through a server.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from ledgerflow.api.cli.console import err, fail
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.remote import local_only
from ledgerflow.events import Cursor, EventStoreError
from ledgerflow.events.backup import EXPORT_BATCH, export_line, import_file

__all__ = ["export", "import_"]


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True,
                    disable=not err.is_terminal)


def export(
    after: Annotated[str | None, typer.Option(help="Only the events after this cursor (from an earlier export).")] = None,
) -> None:
    """Write every event, in global order, to stdout as JSON lines: a backup that
    `ledgerflow events import` restores into any store (SQLite or PostgreSQL)."""
    local_only("events export")
    out = sys.stdout.buffer
    count, last = 0, after
    with opened_store() as store, _progress() as progress:
        task = progress.add_task("exporting", total=None)
        try:
            for count, event in enumerate(store.iter_all(Cursor.parse(after), batch=EXPORT_BATCH), 1):
                out.write(export_line(event))
                last = event.cursor
                if count % 10_000 == 0:
                    progress.update(task, description=f"exported {count:,} events")
        except (EventStoreError, ValueError) as exc:
            fail(str(exc), getattr(exc, "hint", None))
    out.flush()
    cursor = f"; to export only newer events later: --after {last}" if count else ""
    err.print(f"exported {count:,} events{cursor}")


def import_(
    file: Annotated[Path, typer.Argument(help="A file written by `ledgerflow events export`.")],
) -> None:
    """Append the events of an export file that this store lacks, with every hash chain
    re-checked first; importing a file twice writes nothing the second time."""
    local_only("events import")
    with opened_store() as store, _progress() as progress:
        task = progress.add_task("checking", total=None)
        try:
            report = import_file(
                store, file,
                lambda read, written: progress.update(task, description=f"imported {written:,} of {read:,} events"),
            )
        except EventStoreError as exc:
            fail(str(exc), getattr(exc, "hint", None))
    err.print(
        f"imported {report.written:,} events into {report.streams:,} streams "
        f"({report.already_stored:,} were already stored)"
    )
