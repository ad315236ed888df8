"""`ledgerflow flow-run cancel`, `resume`, `execute` and `replay`: change a run from outside its engine.

All work on the embedded store, and against a server when `LEDGERFLOW_API_URL` is set; a run
may be named by its id, a unique id prefix or its run name.
`replay` exits 0 when the replay completed and 1 otherwise.
`execute` exits 0 when the run completed, 1 when it ended otherwise (failed, crashed,
cancelled), 3 when another executor claimed the run first, 4 when the run cannot be executed
here (unknown, not Scheduled, its flow cannot be loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.markup import escape

from ledgerflow.api.cli.client import ApiClient
from ledgerflow.api.cli.console import err, fail, out, table
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.cli.lookup import resolved_run
from ledgerflow.api.cli.runs import STATE_STYLES
from ledgerflow.events import EventStoreError, load_settings
from ledgerflow.events.runs import RunNotFound, RunStateConflict, cancel_flow_run, resume_flow_run

if TYPE_CHECKING:
    from ledgerflow.runtime.replays import Verdict

__all__ = ["cancel", "execute", "replay", "resume"]

EXIT_FAILED_RUN = 1
EXIT_CLAIMED_ELSEWHERE = 3
EXIT_NOT_EXECUTABLE = 4


def cancel(
    run_id: Annotated[str, typer.Argument(help="Flow run id.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="Why (kept in the log).")] = None,
) -> None:
    """Cancel a flow run (Cancelled if not started, else Cancelling until it stops)."""
    run_id = resolved_run(run_id)
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


def resume(
    run_id: Annotated[str, typer.Argument(help="Id of a Paused or Suspended flow run.")],
    run_input: Annotated[str | None, typer.Option("--input", "-i", help="The input it waits for, as a JSON object.")] = None,
) -> None:
    """Resume a paused flow run (it goes on), or a suspended one (it is executed again)."""
    given: dict[str, Any] | None = None
    if run_input is not None:
        try:
            given = orjson.loads(run_input)
        except orjson.JSONDecodeError as exc:
            fail(f"--input is not JSON: {exc}", """e.g. --input '{"name": "Ada"}'""")
        if not isinstance(given, dict):
            fail("--input must be a JSON object", """e.g. --input '{"name": "Ada"}'""")
    run_id = resolved_run(run_id)
    settings = load_settings()
    try:
        if settings.api_url:
            with ApiClient(settings.api_url, settings.api_key) as client:
                name = client.resume_flow_run(run_id, given)
        else:
            with opened_store() as store:
                name = resume_flow_run(store, run_id, given, actor="cli").type.partition(".")[2]
    except RunNotFound:
        fail(f"no flow run with id {run_id!r}", "list runs with: ledgerflow flow-run ls")
    except RunStateConflict as exc:
        fail(str(exc))
    except EventStoreError as exc:
        fail(str(exc).splitlines()[0])
    out.print(f"flow run {run_id} is now [bold]{name}[/]")
    if name == "Resuming":
        out.print(f"it runs again when executed: by the server's runner, or `ledgerflow flow-run execute {run_id}`")


def execute(
    run_id: Annotated[str, typer.Argument(help="Id of a Scheduled flow run.")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse a run whose scheduled time has not come.")] = False,
) -> None:
    """Execute a requested (Scheduled) flow run here: claim it, load its flow, run it."""
    from ledgerflow.runtime import RunAlreadyClaimed, RunNotAdoptable, execute_flow_run

    run_id = resolved_run(run_id, code=EXIT_NOT_EXECUTABLE)
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


def _parameters(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs; a value that reads as JSON (`3`, `true`, `[1,2]`) is taken as such."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--param {pair!r} must look like key=value", "e.g. --param n=100 --param region=eu")
        try:
            found[key.strip()] = orjson.loads(text)
        except orjson.JSONDecodeError:
            found[key.strip()] = text
    return found


def replay(
    run_id: Annotated[str, typer.Argument(help="Id of a finished flow run.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Change a parameter: key=value (repeatable).")] = None,
    from_task: Annotated[str | None, typer.Option("--from-task", help="Run every task from the first call of this one on.")] = None,
    no_reuse: Annotated[list[str] | None, typer.Option("--no-reuse", help="Always run this task (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show which task runs would be reused.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Hand the replay to the server instead of running it here.")] = False,
) -> None:
    """Replay a finished flow run from its last successful task: what succeeded is reused."""
    from ledgerflow.runtime import config
    from ledgerflow.runtime.execute import RunNotAdoptable
    from ledgerflow.runtime.execute import replay as replay_run
    from ledgerflow.runtime.replays import ReplayError, ReplayOptions, plan_replay

    parameters = _parameters(param or [])
    run_id = resolved_run(run_id)
    options = ReplayOptions(from_task, tuple(no_reuse or ()))
    try:
        if dry_run:
            _show_plan(plan_replay(config.current().log, run_id, options).preview())
            return
        outcome = replay_run(run_id, parameters=parameters, from_task=from_task, no_reuse=no_reuse or (), detach=detach)
    except (RunNotFound, ReplayError) as exc:
        fail(str(exc), "list runs with: ledgerflow flow-run ls" if isinstance(exc, RunNotFound) else None)
    except RunNotAdoptable as exc:
        fail(str(exc))
    except EventStoreError as exc:
        fail(str(exc).splitlines()[0])
    if isinstance(outcome, str):
        out.print(f"replay {outcome} of {run_id} requested; the server's runner executes it")
        return
    style = STATE_STYLES.get(outcome.type, "white")
    out.print(f"replay {outcome.flow_run_id} of {run_id} finished [{style}]{outcome.name}[/]")
    if not outcome.is_completed():
        raise typer.Exit(EXIT_FAILED_RUN)


def _show_plan(verdicts: list[Verdict]) -> None:
    rows = table("TASK RUN", "ORIGINAL STATE", "REPLAY", "WHY", no_wrap=("REPLAY",))
    for verdict in verdicts:
        action = "[green]reuse[/]" if verdict.reuse else "[yellow]run[/]"
        rows.add_row(escape(f"{verdict.task_name}-{verdict.occurrence}"), escape(verdict.state_name or "-"), action,
                     escape(verdict.reason))
    out.print(rows)
    reused = sum(v.reuse for v in verdicts)
    out.print(f"{reused} of {len(verdicts)} task runs would be reused; tasks whose inputs change run again")
