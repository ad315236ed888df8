"""The `ledgerflow` command line."""

from __future__ import annotations

import typer

from ledgerflow.api import cli_control, cli_events, cli_keys, cli_projections, cli_runs, cli_server

app = typer.Typer(
    name="ledgerflow",
    help="ledgerflow: Python workflows whose every step lands in an immutable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_events.app, name="events")
app.add_typer(cli_server.app, name="server")
app.add_typer(cli_keys.app, name="api-key")
cli_runs.app.command("cancel")(cli_control.cancel)
cli_runs.app.command("execute")(cli_control.execute)
app.add_typer(cli_runs.app, name="flow-run")
app.add_typer(cli_projections.app, name="projections")
app.command("stats")(cli_runs.stats)


def main() -> None:
    app()
