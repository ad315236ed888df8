"""`ledgerflow flow-run cancel` and `flow-run execute`: change a run from outside its engine.

Both work on the embedded store, and against a server when `LEDGERFLOW_API_URL` is set.
`execute` exits 0 when the run completed, 1 when it ended otherwise (failed, crashed,
cancelled), 3 when another executor claimed the run first, 4 when the run cannot be executed
here (unknown, not Scheduled, its flow cannot be loaded).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ledgerflow.api.cli.client import ApiClient
from ledgerflow.api.cli.console import err, fail, out
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.runs import STATE_STYLES
from ledgerflow.events import EventStoreError, load_settings
from ledgerflow.events.runs import RunNotFound, RunStateConflict, cancel_flow_run

__all__ = ["cancel", "execute"]

EXIT_FAILED_RUN = 1
EXIT_CLAIMED_ELSEWHERE = 3
EXIT_NOT_EXECUTABLE = 4


def cancel(
    run_id: Annotated[str, typer.Argument(help="Flow run id.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why (kept in the log).")] = None,
) -> None:
    """Cancel a flow run (Cancelled if not started, else Cancelling until it stops)."""
    settings = load_settings()
    try:
        if settings.api_url:
            with ApiClient(settings.api_url, settings.api_key) as client:
                name = client.cancel_flow_run(run_id, message)
        else:
            with opened_store() as store:
                name = cancel_flow_run(store, run_id, message, actor="cli").type.partition(".")[2]
    except RunNotFound:
        fail(f"no flow run with id {run_id!r}", "list runs with: ledgerflow flow-run ls")
    except RunStateConflict as exc:
        fail(str(exc))
    except EventStoreError as exc:
        fail(str(exc).splitlines()[0])
    out.print(f"flow run {run_id} is now [bold]{name}[/]")


def execute(
    run_id: Annotated[str, typer.Argument(help="Id of a Scheduled flow run.")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse a run whose scheduled time has not come.")] = False,
) -> None:
    """Execute a requested (Scheduled) flow run here: claim it, load its flow, run it."""
    from ledgerflow.runtime import RunAlreadyClaimed, RunNotAdoptable, execute_flow_run

    try:
        state = execute_flow_run(run_id, wait=not no_wait)
    except RunNotFound:
        fail(f"no flow run with id {run_id!r}", "list runs with: ledgerflow flow-run ls", code=EXIT_NOT_EXECUTABLE)
    except RunAlreadyClaimed as exc:
        err.print(f"[yellow]{exc}[/] (nothing to do here)")
        raise typer.Exit(EXIT_CLAIMED_ELSEWHERE) from None
    except RunNotAdoptable as exc:
        fail(str(exc), code=EXIT_NOT_EXECUTABLE)
    except ValueError as exc:  # not a UUID
        fail(f"{run_id!r} is not a flow run id: {exc}", code=EXIT_NOT_EXECUTABLE)
    style = STATE_STYLES.get(state.type, "white")
    out.print(f"flow run {run_id} finished [{style}]{state.name}[/]" + (f": {state.message}" if state.message else ""))
    if not state.is_completed():
        raise typer.Exit(EXIT_FAILED_RUN)
