"""`ledgerflow deployment ...`, `ledgerflow deploy` (ledgerflow.yaml) and `ledgerflow scheduler run`.

Every command works on the embedded store, and against a server when `LEDGERFLOW_API_URL` is
set (`Backend`: `_Local` or `_Remote`, which answer with the API's `DeploymentOut`). Creating a
deployment loads its flow to check the parameters: here, or in the server's child process.
`run --watch` exits 0 when the run completed, 1 otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import orjson
import typer
from rich.markup import escape

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import opened_store, store_or_server
from ledgerflow.api.cli.control import _parameters
from ledgerflow.api.cli.runs import STATE_STYLES
from ledgerflow.api.deployments import DeploymentIn, DeploymentOut, deployment_out
from ledgerflow.events import EventStore, EventStoreError, load_settings
from ledgerflow.events.deployments import (
    DeploymentError,
    DeploymentNotFound,
    apply_deployment,
    delete_deployment,
    deployment_id,
    pause_deployment,
    read_deployment,
    request_deployment_run,
    resume_deployment,
)
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.schedules import Schedule, ScheduleError
from ledgerflow.events.states import STATE_NAMES, TERMINAL
from ledgerflow.events.transitions import fold
from ledgerflow.projections import queries
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["app", "deploy", "scheduler_app"]

app = typer.Typer(help="Create, list, run, pause and delete deployments.", no_args_is_help=True)
scheduler_app = typer.Typer(help="Run the scheduler alone.", no_args_is_help=True)


class Backend(Protocol):
    def apply(self, body: DeploymentIn) -> tuple[str, DeploymentOut]: ...
    def list(self) -> list[DeploymentOut]: ...
    def get(self, name: str) -> DeploymentOut: ...
    def run(self, name: str, parameters: dict[str, Any], at: datetime | None) -> str: ...
    def change(self, name: str, action: str) -> DeploymentOut: ...
    def run_state(self, run_id: str) -> tuple[str | None, str | None]: ...


class _Local:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.rm = ReadModel(store)

    def apply(self, body: DeploymentIn) -> tuple[str, DeploymentOut]:
        from ledgerflow.runtime.deployments import build_spec

        options = body.model_dump(exclude={"paused", "entrypoint", "schedules"})
        spec = build_spec(body.entrypoint, schedules=list(body.schedules), **options)
        result = apply_deployment(self.store, spec, paused=body.paused, actor="cli")
        return result.outcome, deployment_out(result.deployment)

    def list(self) -> list[DeploymentOut]:
        return [deployment_out(d) for d in queries.list_deployments(self.rm)]

    def _live(self, name: str) -> Any:
        found = read_deployment(self.store, name)
        if found is None or found.deleted:
            raise DeploymentNotFound(name)
        return found

    def get(self, name: str) -> DeploymentOut:
        found = self._live(name)
        return deployment_out(found, detail=True, runs=queries.upcoming_runs(self.rm, found.id))

    def run(self, name: str, parameters: dict[str, Any], at: datetime | None) -> str:
        event = request_deployment_run(self.store, name, parameters=parameters, scheduled_time=at, actor="cli")
        return str(event.data["flow_run_id"])

    def change(self, name: str, action: str) -> DeploymentOut:
        do = {"pause": pause_deployment, "resume": resume_deployment, "delete": delete_deployment}[action]
        return deployment_out(do(self.store, name, actor="cli"))

    def run_state(self, run_id: str) -> tuple[str | None, str | None]:
        events = self.store.read_stream(flow_run_stream(run_id))
        state = fold(e for e in events if e.type.startswith("flow-run."))
        message = next((e.data.get("message") for e in reversed(events) if state and e.type == f"flow-run.{state.name}"), None)
        return (state.name if state else None), message


class _Remote:
    def __init__(self, url: str, key: str | None) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=180.0)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise EventStoreError(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code == 404:
            raise DeploymentNotFound(path.split("/")[3] if path.count("/") >= 3 else path)
        if response.status_code >= 400:
            try:
                detail = str(orjson.loads(response.content)["detail"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = response.text[:200]
            raise DeploymentError(detail)
        return orjson.loads(response.content)

    @staticmethod
    def _ident(name: str) -> str:
        return str(deployment_id(name)) if "/" in name else name

    def apply(self, body: DeploymentIn) -> tuple[str, DeploymentOut]:
        reply = self._call("POST", "/api/deployments", body.model_dump(mode="json", exclude_none=False))
        return str(reply["outcome"]), DeploymentOut.model_validate(reply["deployment"])

    def list(self) -> list[DeploymentOut]:
        return [DeploymentOut.model_validate(d) for d in self._call("GET", "/api/deployments")]

    def get(self, name: str) -> DeploymentOut:
        return DeploymentOut.model_validate(self._call("GET", f"/api/deployments/{self._ident(name)}"))

    def run(self, name: str, parameters: dict[str, Any], at: datetime | None) -> str:
        body = {"parameters": parameters, "scheduled_time": at.isoformat() if at else None}
        return str(self._call("POST", f"/api/deployments/{self._ident(name)}/run", body)["flow_run_id"])

    def change(self, name: str, action: str) -> DeploymentOut:
        method = "DELETE" if action == "delete" else "POST"
        path = f"/api/deployments/{self._ident(name)}" + ("" if action == "delete" else f"/{action}")
        return DeploymentOut.model_validate(self._call(method, path))

    def run_state(self, run_id: str) -> tuple[str | None, str | None]:
        reply = self._call("GET", f"/api/streams/{flow_run_stream(run_id)}?limit=5000")
        events = reply["events"]
        state = None
        message = None
        for event in events:
            name = str(event["type"]).partition(".")[2]
            if str(event["type"]).startswith("flow-run.") and name in STATE_NAMES:
                state, message = name, event["data"].get("message")
        return state, message


@contextmanager
def backend() -> Iterator[Backend]:
    with store_or_server(_Remote, _Local, missing=DeploymentNotFound, listing="ledgerflow deployment ls", refused=(DeploymentError, ScheduleError)) as chosen:
        yield chosen


def _schedules(cron: list[str], interval: list[float], rrule: list[str], timezone: str | None,
               anchor: str | None) -> list[Schedule]:
    from ledgerflow.runtime.deployments import schedules_from

    anchor_date = _time(anchor, "--anchor") if anchor else None
    return schedules_from(cron=cron, interval=interval, rrule=rrule, timezone=timezone, anchor_date=anchor_date)


def _time(text: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {text!r} is not a time", "use ISO 8601, e.g. 2024-05-01T06:00:00+02:00")
    return when if when.tzinfo else when.astimezone()


def _applied(outcome: str, shown: DeploymentOut) -> None:
    style = {"created": "green", "updated": "yellow"}.get(outcome, "dim")
    out.print(f"[{style}]{outcome}[/] deployment [bold]{escape(shown.name)}[/] ({shown.id})")


@app.command()
def create(
    entrypoint: Annotated[str, typer.Argument(help="path/file.py:flow_function or module:flow_function")],
    name: Annotated[str, typer.Option("--name", "-n", help="The deployment's name.")],
    cron: Annotated[list[str] | None, typer.Option("--cron", help="Cron schedule (repeatable).")] = None,
    interval: Annotated[list[float] | None, typer.Option("--interval", help="Every N seconds (repeatable).")] = None,
    rrule: Annotated[list[str] | None, typer.Option("--rrule", help="RFC 5545 RRULE (repeatable).")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone of the schedules (UTC).")] = None,
    anchor: Annotated[str | None, typer.Option("--anchor", help="Anchor time of --interval.")] = None,
    pool: Annotated[str, typer.Option("--pool", help="Work pool.")] = "default",
    queue: Annotated[str | None, typer.Option("--queue", help="Work queue.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")] = None,
    concurrency_limit: Annotated[int | None, typer.Option("--concurrency-limit", min=1, help="Runs at once.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    version: Annotated[str | None, typer.Option("--version")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Create (or update) a deployment of a flow; its parameters are checked against the flow."""
    with backend() as deployments:
        body = DeploymentIn(
            name=name, entrypoint=entrypoint, working_dir=str(Path.cwd()), parameters=_parameters(param or []),
            schedules=_schedules(cron or [], interval or [], rrule or [], timezone, anchor), tags=tag or [],
            work_pool=pool, work_queue=queue, concurrency_limit=concurrency_limit, description=description,
            version=version, paused=paused or None,
        )
        outcome, shown = deployments.apply(body)
    _applied(outcome, shown)


@app.command("ls")
def ls(as_json: Annotated[bool, typer.Option("--json", help="JSON, one array.")] = False) -> None:
    """List deployments."""
    with backend() as deployments:
        found = deployments.list()
    if as_json:
        print(orjson.dumps([d.model_dump(mode="json") for d in found]).decode())
        return
    if not found:
        out.print("[dim]no deployments[/]")
        return
    rows = table("NAME", "ID", "SCHEDULES", "POOL", "LIMIT", "STATUS", no_wrap=("ID",))
    for d in found:
        rows.add_row(escape(d.name), d.id, escape("; ".join(s.description for s in d.schedules if s.active) or "-"),
                     escape(d.work_pool or "-"), str(d.concurrency_limit or "-"),
                     "[yellow]paused[/]" if d.paused else "[green]active[/]")
    out.print(rows)


@app.command()
def inspect(
    name: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A deployment: its definition, its next due times and its runs waiting to start."""
    with backend() as deployments:
        shown = deployments.get(name)
    if as_json:
        print(orjson.dumps(shown.model_dump(mode="json")).decode())
        return
    out.print(f"[bold]{escape(shown.name)}[/]  {'[yellow]paused[/]' if shown.paused else '[green]active[/]'}")
    out.print(f"id {shown.id}  revision {shown.revision}")
    for label, value in (("entrypoint", shown.entrypoint), ("working dir", shown.working_dir),
                         ("parameters", shown.parameters or None), ("tags", shown.tags or None),
                         ("work pool", shown.work_pool), ("work queue", shown.work_queue),
                         ("concurrency limit", shown.concurrency_limit), ("version", shown.version),
                         ("description", shown.description)):
        if value:
            out.print(f"{label} {escape(str(value))}")
    for schedule in shown.schedules:
        state = "active" if schedule.active else "inactive"
        out.print(f"schedule {escape(schedule.description)} ({state})")
    slots = table("NEXT DUE (UTC)", "SCHEDULE", title="next scheduled runs")
    for slot in shown.next_slots:
        slots.add_row(slot.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), slot.schedule_id)
    out.print(slots if shown.next_slots else "[dim]no schedule due[/]")
    if shown.scheduled_runs:
        runs = table("RUN", "ID", "STATE", "DUE (UTC)", title="runs waiting to start", no_wrap=("ID",))
        for run in shown.scheduled_runs:
            due = run.scheduled_time.strftime("%Y-%m-%d %H:%M:%S") if run.scheduled_time else "-"
            runs.add_row(escape(run.run_name or "-"), run.id, escape(run.state_name or "-"), due)
        out.print(runs)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value (repeatable).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When (ISO 8601); default now.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Follow the run until it ends.")] = False,
) -> None:
    """Request a run of a deployment (its work pool's runner executes it)."""
    when = _time(at, "--at") if at else None
    with backend() as deployments:
        run_id = deployments.run(name, _parameters(param or []), when)
        out.print(f"flow run {run_id} requested")
        if not watch:
            return
        seen = None
        while True:
            state, message = deployments.run_state(run_id)
            if state != seen and state is not None:
                style = STATE_STYLES.get(STATE_NAMES[state], "white")
                out.print(f"{datetime.now(UTC).strftime('%H:%M:%S')} [{style}]{state}[/]" +
                          (f": {escape(str(message))}" if message and state != "Scheduled" else ""))
                seen = state
            if state is not None and STATE_NAMES[state] in TERMINAL:
                break
            time.sleep(0.3)
    if seen != "Completed":
        raise typer.Exit(1)


def _change(action: str, name: str) -> None:
    with backend() as deployments:
        shown = deployments.change(name, action)
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]
    out.print(f"deployment [bold]{escape(shown.name)}[/] {done}")


@app.command()
def pause(name: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")]) -> None:
    """Pause its schedules (future unstarted runs are cancelled); manual runs still work."""
    _change("pause", name)


@app.command()
def resume(name: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")]) -> None:
    """Resume its schedules."""
    _change("resume", name)


@app.command()
def delete(name: Annotated[str, typer.Argument(help="flow-name/deployment-name or id")]) -> None:
    """Delete it (future unstarted runs are cancelled; its history stays in the log)."""
    _change("delete", name)


# -- ledgerflow.yaml ----------------------------------------------------------------------------


def _declared(path: Path) -> list[dict[str, Any]]:
    import yaml

    if not path.is_file():
        fail(f"{path} does not exist", "write a ledgerflow.yaml with a list of deployments, or pass --file")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        fail(f"{path} is not valid YAML: {' '.join(str(exc).split())}")
    items = loaded.get("deployments") if isinstance(loaded, dict) else loaded
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        fail(f"{path} must hold a list of deployments (or a mapping with a 'deployments' list)")
    return items


def _body(item: dict[str, Any], folder: Path, index: int) -> DeploymentIn:
    from ledgerflow.runtime.deployments import schedules_from

    values = dict(item)
    pool = values.pop("work_pool", "default")
    if isinstance(pool, dict):
        values.setdefault("work_queue", pool.get("work_queue_name"))
        pool = pool.get("name", "default")
    schedules: list[Any] = []
    for entry in values.pop("schedules", None) or []:
        if not isinstance(entry, dict):
            raise DeploymentError(f"deployment {index + 1}: each schedule is a mapping (cron:, interval: or rrule:)")
        entry = dict(entry)
        kind = next((k for k in ("cron", "interval", "rrule") if k in entry), None)
        if kind is None:
            raise DeploymentError(f"deployment {index + 1}: a schedule needs cron:, interval: or rrule:")
        entry.setdefault("kind", kind)
        schedules.append(entry)
    shorthand = schedules_from(cron=values.pop("cron", None), interval=values.pop("interval", None),
                               rrule=values.pop("rrule", None), timezone=values.get("timezone"))
    values.pop("timezone", None)
    working = values.pop("working_dir", None)
    try:
        return DeploymentIn.model_validate({
            **values, "work_pool": pool, "schedules": [*schedules, *[s.model_dump() for s in shorthand]],
            "working_dir": str((folder / working).resolve()) if working else str(folder.resolve()),
        })
    except Exception as exc:  # noqa: BLE001 - a pydantic error: one line naming the deployment
        from ledgerflow.api.cli.console import describe

        raise DeploymentError(f"deployment {item.get('name', index + 1)!r} in ledgerflow.yaml: {describe(exc)}") from None


def deploy(
    names: Annotated[list[str] | None, typer.Argument(help="Deployment names to apply (default: the only one).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Apply every deployment of the file.")] = False,
    file: Annotated[Path, typer.Option("--file", "-f", help="The declarations.")] = Path("ledgerflow.yaml"),
) -> None:
    """Apply the deployments declared in ledgerflow.yaml (idempotent: unchanged ones write nothing)."""
    items = _declared(file)
    chosen = items if all_ or (not names and len(items) == 1) else [i for i in items if i.get("name") in set(names or [])]
    if not chosen:
        fail("name the deployments to apply, or pass --all",
             f"{file} declares: {', '.join(str(i.get('name')) for i in items)}")
    missing = set(names or []) - {str(i.get("name")) for i in items}
    if missing and not all_:
        fail(f"{file} declares no deployment {', '.join(sorted(missing))}")
    with backend() as deployments:
        bodies = [_body(item, file.parent, index) for index, item in enumerate(chosen)]
        for body in bodies:
            outcome, shown = deployments.apply(body)
            _applied(outcome, shown)


@scheduler_app.command("run")
def scheduler_run() -> None:
    """Run the scheduler (and the late-run marker) in this process until interrupted."""
    from ledgerflow.events.model import utcnow
    from ledgerflow.events.runs import mark_late
    from ledgerflow.events.service import LoopService, Supervisor
    from ledgerflow.runtime.scheduler import Scheduler, SchedulerSettings

    settings = load_settings()
    with opened_store() as store:
        scheduler = Scheduler(store, SchedulerSettings.of(settings), store=store)
        read_model = ReadModel(store)
        grace = timedelta(seconds=settings.late_after_seconds)

        def late() -> None:
            for run_id, due in queries.late_flow_runs(read_model, before=utcnow() - grace):
                mark_late(store, run_id, due)

        supervisor = Supervisor([scheduler.service(), LoopService("late-runs", late, 1.0)])
        out.print(f"scheduler on {settings.store_url.split('@')[-1]}; Ctrl-C to stop")
        supervisor.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            supervisor.stop()
