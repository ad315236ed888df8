"""`ledgerflow flow-run ...` and `ledgerflow stats`: run history from the projections.

Every command works on the embedded store with no server: the projections first catch up
with the log (see projections/queries.py), and runs whose process is gone end `Crashed` first
(api/liveness.py), so no run shows `Running` forever. With LEDGERFLOW_API_URL set each asks the
server. A run may be named by its id, a unique id prefix or its run name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from ledgerflow.api.cli.client import ApiClient
from ledgerflow.api.cli.remote import remote_flow_runs, server_client
from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import opened_store
from ledgerflow.api.liveness import end_dead_runs
from ledgerflow.events import EventStoreError, load_settings
from ledgerflow.events.deployments import DeploymentError, deployment_id
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.states import TERMINAL, StateType, state_from_event_type
from ledgerflow.events.timesyntax import InvalidTime, parse_time
from ledgerflow.projections import queries
from ledgerflow.projections.errors import ProjectionError
from ledgerflow.projections.lookup import resolve_run
from ledgerflow.projections.models import FlowRun, LineageGraph, LogPage, StateRecord, TaskRun
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["app", "parse_since", "stats"]

app = typer.Typer(help="List, inspect and follow flow runs.", no_args_is_help=True)

STATE_STYLES = {
    StateType.COMPLETED: "green",
    StateType.FAILED: "red",
    StateType.CRASHED: "bold magenta",
    StateType.CANCELLED: "dim",
    StateType.CANCELLING: "dim",
    StateType.RUNNING: "cyan",
    StateType.PENDING: "yellow",
    StateType.SCHEDULED: "yellow",
    StateType.PAUSED: "blue",
}
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_FOLLOW_SECONDS = 0.5
"""How often `logs --follow` asks the server for more."""


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`--since`: a duration ago or an ISO-8601 time, as the API takes it (events/timesyntax.py)."""
    try:
        return parse_time(value, now)
    except InvalidTime as exc:
        fail(f"--since {exc}")


@contextmanager
def read_model() -> Iterator[ReadModel]:
    with opened_store() as store:
        try:
            opened = ReadModel(store)
            end_dead_runs(opened)
            yield opened
        except (ProjectionError, EventStoreError) as exc:
            fail(str(exc).splitlines()[0])


def _state(state_type: StateType | None, name: str | None) -> str:
    if state_type is None:
        return "[dim]-[/]"
    return f"[{STATE_STYLES.get(state_type, 'white')}]{escape(name or '')}[/]"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


@app.command("ls")
def ls(
    flow: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="State type (FAILED) or name (Cached).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Runs with this tag (repeatable: all of them).")] = None,
    deployment: Annotated[str | None, typer.Option("--deployment", help="Only runs of this deployment (flow/name or id).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Created since: 30m, 12h, 7d or an ISO time.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to show.")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page.")] = None,
    oldest: Annotated[bool, typer.Option("--oldest", help="Oldest first.")] = False,
) -> None:
    """List flow runs, newest first."""
    start = parse_since(since) if since else None
    if deployment is not None and "/" in deployment:
        try:
            deployment = str(deployment_id(deployment))
        except DeploymentError as exc:
            fail(str(exc))
    filters: dict[str, Any] = dict(
        flow_name=flow, state=state, tags=tag or (), deployment_id=deployment,
        since=start, sort="oldest" if oldest else "newest", limit=limit, cursor=cursor,
    )
    settings = load_settings()
    if settings.api_url:  # a server is configured: ask it rather than the local database
        page = remote_flow_runs(settings, **filters)
    else:
        with read_model() as rm:
            page = queries.list_flow_runs(rm, **filters)
    rows = table(
        "ID", "FLOW", "NAME", "STATE", "CREATED", "DURATION", "TAGS",
        no_wrap=("STATE",), min_widths={"ID": 18, "CREATED": 10},
    )
    for run in page.items:
        rows.add_row(
            run.id, escape(run.flow_name or "-"), escape(run.run_name or "-"), _state(run.state_type, run.state_name),
            _time(run.created), _duration(run.duration), escape(",".join(run.tags)),
        )
    if not page.items:
        out.print("[dim]no flow runs[/]")
        return
    out.print(rows)
    if page.next_cursor:
        out.print(f"[dim]more: --cursor {page.next_cursor}[/]")


def _task_label(task: TaskRun) -> str:
    """The task run's name, escaped for markup."""
    return escape(task.run_name or task.task_name or task.id)


@app.command()
def inspect(run_id: Annotated[str, typer.Argument(help="Flow run id, unique id prefix or run name.")]) -> None:
    """A flow run: its states with timings, task runs, errors and artifacts."""
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            detail = client.get_flow_run(run_id)
            found = client.run_artifacts(detail.flow_run.id)
    else:
        with read_model() as rm:
            detail = queries.get_run(rm, resolve_run(rm, run_id))
            found = queries.run_artifacts(rm, detail.flow_run.id)
    run: FlowRun = detail.flow_run
    out.print(f"[bold]{escape(run.flow_name or '-')}[/] / {escape(run.run_name or '-')}  {_state(run.state_type, run.state_name)}")
    out.print(f"id {run.id}")
    out.print(
        f"created {_time(run.created)}  start {_time(run.start)}  end {_time(run.end)}  "
        f"duration {_duration(run.duration)}  attempts {run.attempts}"
    )
    for label, value in (("parameters", run.parameters), ("tags", run.tags),
                         ("deployment", run.deployment_id), ("parent", run.parent_flow_run_id),
                         ("replay of", run.replay_of)):
        if value:
            out.print(f"{label} {escape(str(value))}")
    if detail.replays:
        out.print(f"replayed by {escape(', '.join(detail.replays))}")
    if run.error:
        out.print(f"[red]error {escape(run.error)}[/]")
    names = {task.id: _task_label(task) for task in detail.task_runs}
    states = table("TIME", "+", "RUN", "STATE", "ATTEMPT", "DETAIL", title="states")
    origin = detail.states[0].occurred if detail.states else run.created
    for record in detail.states:
        states.add_row(
            record.occurred.strftime("%H:%M:%S.%f")[:-3], f"{(record.occurred - origin).total_seconds():.3f}s",
            names.get(record.task_run_id or "", "flow") if record.task_run_id else "flow",
            _state(record.state_type, record.state_name), str(record.attempt),
            escape(record.error or record.message or ""),
        )
    out.print(states)
    tasks = table("TASK RUN", "ID", "STATE", "START", "DURATION", "ATTEMPTS", "DETAIL", title="task runs")
    for task in detail.task_runs:
        tasks.add_row(
            _task_label(task), task.id, _state(task.state_type, task.state_name), _time(task.start),
            _duration(task.duration), str(task.attempts), _task_detail(task),
        )
    out.print(tasks)
    failure = _last_traceback(detail.states)
    if failure:
        out.print("[bold]traceback[/]")
        out.print(Text(failure.rstrip(), style="red"), overflow="fold")
    if found:
        arts = table("KEY", "TYPE", "TASK RUN", "DATA", title="artifacts")
        for artifact in found:
            arts.add_row(escape(artifact.key or artifact.id), artifact.artifact_type,
                         names.get(artifact.task_run_id or "", "-"), escape(str(artifact.data)[:80]))
        out.print(arts)


def _last_traceback(states: list[StateRecord]) -> str | None:
    """The traceback of the run's failure: its own last one, else its tasks' last one."""
    traced = [record for record in states if record.traceback]
    own = [record for record in traced if record.task_run_id is None]
    return (own or traced)[-1].traceback if traced else None


def _task_detail(task: TaskRun) -> str:
    """Its error, or where a Reused / Cached result came from."""
    if task.error:
        return f"[red]{escape(task.error)}[/]"
    if task.cached_from:
        verb = "reused" if task.state_name == "Reused" else "taken"
        return f"[cyan]{verb} from task run {escape(task.cached_from)}[/]"
    return ""


def _level(value: str) -> int:
    if value.upper() in LEVELS:
        return LEVELS[value.upper()]
    if value.isdigit():
        return int(value)
    fail(f"--level {value!r} is not a log level", f"use one of {', '.join(LEVELS)} or a number")


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="Flow run id, unique id prefix or run name.")],
    level: Annotated[str, typer.Option("--level", "-l", help="Minimum level (DEBUG, INFO, ...).")] = "DEBUG",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
) -> None:
    """Print a flow run's logs (and follow them while it runs)."""
    minimum = _level(level)
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            _remote_logs(client, run_id, minimum, follow)
        return
    with read_model() as rm:
        run_id = resolve_run(rm, run_id)
        position = 0
        feed = rm.store.subscribe(after=rm.store.head()) if follow else None
        try:
            while True:
                page = queries.run_logs(rm, run_id, min_level=minimum, after=position, limit=1000)
                _print_log_lines(page)
                ended = _ended(rm, run_id, position, page.next_after)
                position = page.next_after or position
                if len(page.items) == 1000:
                    continue
                if feed is None or ended:
                    return
                feed.poll(timeout=1.0)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        finally:
            if feed is not None:
                feed.close()


def _print_log_lines(page: LogPage) -> None:
    for line in page.items:
        style = "red" if line.level >= 40 else "yellow" if line.level >= 30 else ""
        who = line.task_run_name or line.task_run_id or "flow"
        text = f"{line.occurred.strftime('%H:%M:%S.%f')[:-3]} {line.level_name:<8} {who} | {line.message}"
        out.print(f"[{style}]{escape(text)}[/]" if style else text, markup=bool(style))


def _remote_logs(client: ApiClient, ref: str, minimum: int, follow: bool) -> None:
    """`logs` through the server: pages of log lines, and with `follow` more of them until the
    run is seen to have ended before a page was read (so that page holds its last lines)."""
    run_id = client.get_flow_run(ref).flow_run.id
    position = 0
    while True:
        ended = not follow or client.get_flow_run(run_id).flow_run.state_type in TERMINAL
        page = client.run_logs(run_id, minimum, position, 1000)
        _print_log_lines(page)
        position = page.next_after or position
        if len(page.items) == 1000:
            continue
        if ended:
            return
        time.sleep(_FOLLOW_SECONDS)


def _ended(rm: ReadModel, run_id: str, after: int, upto: int | None) -> bool:
    """Whether the run's stream reached a terminal flow-run state in (after, upto]."""
    if not upto or upto <= after:
        return False
    for event in rm.store.read_stream(flow_run_stream(run_id), from_version=after + 1, limit=upto - after):
        parsed = state_from_event_type(event.type)
        if parsed and parsed[0] == "flow-run" and parsed[2] in TERMINAL:
            return True
    return False


@app.command()
def lineage(
    run_id: Annotated[str, typer.Argument(help="Flow run or task run: id, unique id prefix or run name.")],
    depth: Annotated[int, typer.Option("--depth", "-d", help="How many hops to follow.")] = 3,
    direction: Annotated[str, typer.Option("--direction", help="upstream, downstream or both.")] = "both",
) -> None:
    """Draw what fed, called, replayed or reused a run, as a tree."""
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            graph = client.lineage(run_id, depth, direction)
    else:
        with read_model() as rm:
            run_id = resolve_run(rm, run_id, ("flow_runs", "task_runs"))
            graph = queries.lineage(rm, run_id, depth=depth, direction=direction)  # type: ignore[arg-type]
    out.print(lineage_tree(graph))


def lineage_tree(graph: LineageGraph) -> Tree:
    nodes = {node.id: node for node in graph.nodes}

    def label(node_id: str) -> str:
        node = nodes[node_id]
        kind = "flow run" if node.kind == "flow_run" else "task run"
        return f"[bold]{escape(node.name or '')}[/] [dim]{kind} {node.id}[/]"

    inputs: dict[str, list[str]] = {}
    children: dict[str, list[tuple[str, str]]] = {}
    # A subflow hangs under the stand-in task run that ran it, when that edge is in the graph.
    run_by_task = {
        edge.target for edge in graph.edges if edge.kind == "subflow" and nodes[edge.source].kind == "task_run"
    }
    for edge in graph.edges:
        if edge.kind == "upstream":
            inputs.setdefault(edge.target, []).append(nodes[edge.source].name or edge.source)
        elif not (edge.kind == "subflow" and edge.target in run_by_task and nodes[edge.source].kind == "flow_run"):
            children.setdefault(edge.source, []).append((edge.kind, edge.target))
    for node in graph.nodes:
        if node.kind == "task_run" and node.flow_run_id in nodes:
            children.setdefault(node.flow_run_id, []).append(("task", node.id))
    root = Tree(label(graph.root))
    seen = {graph.root}

    def grow(tree: Tree, node_id: str) -> None:
        for kind, child in children.get(node_id, []):
            if child in seen:
                continue
            seen.add(child)
            text = label(child)
            if inputs.get(child):
                text += f" [cyan]<- {escape(', '.join(sorted(inputs[child])))}[/]"
            if kind != "task":
                text = f"[magenta]{kind}[/] {text}"
            grow(tree.add(text), child)

    grow(root, graph.root)
    for edge in graph.edges:  # what flowed into the root itself, or what it came from
        if edge.target == graph.root and edge.source in nodes and edge.source not in seen:
            seen.add(edge.source)
            root.add(f"[magenta]{edge.kind} from[/] {label(edge.source)}")
    return root


def stats(
    flow: Annotated[str | None, typer.Option("--flow", help="Only this flow.")] = None,
    since: Annotated[str, typer.Option("--since", help="Period: 24h, 7d, 2w or an ISO time.")] = "7d",
    by: Annotated[str, typer.Option("--by", help="Group by flow, deployment, tag or task.")] = "flow",
) -> None:
    """Runs, success rate and duration percentiles per flow over a period."""
    start = parse_since(since)
    if by not in ("flow", "deployment", "tag", "task"):
        fail(f"--by {by!r} is not one of flow, deployment, tag, task")
    grain = "hour" if datetime.now(UTC) - start <= timedelta(days=2) else "day"
    settings = load_settings()
    if settings.api_url:
        with server_client(settings) as client:
            report = client.analytics(by, start, grain, flow)
    else:
        with read_model() as rm:
            report = queries.analytics(rm, since=start, grain=grain, dimension=by, value=flow)  # type: ignore[arg-type]
    if not report.groups:
        out.print(f"[dim]no runs since {_time(report.since)}[/]")
        return
    figures = ("RUNS", "COMPLETED", "FAILED", "CRASHED", "SUCCESS", "P50", "P95", "MAX")
    rows = table(by.upper(), *figures, title=f"since {_time(report.since)} UTC", right=figures)
    for group in report.groups:
        rate = "-" if group.success_rate is None else f"{group.success_rate:.1%}"
        rows.add_row(
            escape(group.value), str(group.runs), f"[green]{group.completed}[/]", f"[red]{group.failed}[/]",
            f"[magenta]{group.crashed}[/]", rate, _duration(group.p50), _duration(group.p95), _duration(group.max),
        )
    out.print(rows)
