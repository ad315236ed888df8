"""The root `ledgerflow` command: every command group hangs off `app`."""

from __future__ import annotations

import typer

from ledgerflow.api.cli import automations, control, deployments, events, keys, projections, runs, server, workpools

__all__ = ["app", "main"]

app = typer.Typer(
    name="ledgerflow",
    help="ledgerflow: Python workflows whose every step lands in an immutable event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(events.app, name="events")
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
app.add_typer(workpools.pool_app, name="work-pool")
app.add_typer(workpools.queue_app, name="work-queue")
app.add_typer(workpools.worker_app, name="worker")


def main() -> None:
    app()
