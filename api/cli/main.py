"""The root `ledgerflow` command: every command group hangs off `app`."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ledgerflow.api.cli import automations, backup, concurrency_limits, control, deployments, events, keys, projections, runs, server, workpools
from ledgerflow.api.cli.console import fail
from ledgerflow.api.cli.errors import explain

__all__ = ["app", "main"]


class _RootGroup(TyperGroup):
    """Turns an error escaping any command into one line on stderr and exit 1 (unless --debug)."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if ctx.params.get("debug") or _of_the_cli_framework(exc):
                raise
            fail(*explain(exc))


def _of_the_cli_framework(exc: Exception) -> bool:
    """Usage errors, exits and aborts: typer (and its click) print those themselves."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


app = typer.Typer(
    name="ledgerflow",
    help="ledgerflow: Python workflows whose every step lands in an immutable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_RootGroup,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"ledgerflow {version('ledgerflow')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option(
        "--debug", envvar="LEDGERFLOW_DEBUG", help="Show the full traceback of an error.",
    )] = False,
    show_version: Annotated[bool | None, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = None,
) -> None:
    """ledgerflow: Python workflows whose every step lands in an immutable event log."""

app.add_typer(events.app, name="events")
events.app.command("export")(backup.export)
events.app.command("import")(backup.import_)
app.add_typer(server.app, name="server")
app.add_typer(keys.app, name="api-key")
runs.app.command("cancel")(control.cancel)
runs.app.command("resume")(control.resume)
runs.app.command("execute")(control.execute)
runs.app.command("replay")(control.replay)
app.add_typer(runs.app, name="flow-run")
app.add_typer(projections.app, name="projections")
app.command("stats")(runs.stats)
app.add_typer(automations.automation_app, name="automation")
app.add_typer(automations.block_app, name="block")
app.add_typer(automations.engine_app, name="automations")
app.add_typer(deployments.app, name="deployment")
app.command("deploy")(deployments.deploy)
app.add_typer(deployments.scheduler_app, name="scheduler")
app.add_typer(concurrency_limits.app, name="concurrency-limit")
app.add_typer(workpools.pool_app, name="work-pool")
app.add_typer(workpools.queue_app, name="work-queue")
app.add_typer(workpools.worker_app, name="worker")


def main() -> None:
    app()
