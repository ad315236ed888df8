"""`ledgerflow work-pool ...`, `ledgerflow work-queue ...` and `ledgerflow worker start|ls`.

Pool and queue commands work on the embedded store, and against a server when
`LEDGERFLOW_API_URL` is set (`_Local` or `_Remote`, both answering with the API's models).
`worker start` always works through a server: it needs `LEDGERFLOW_API_URL` (and a key of
scope `worker` or `write` when the server wants one).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import httpx
import orjson
import typer
from rich.markup import escape

from ledgerflow.api.cli.console import fail, out, table
from ledgerflow.api.cli.context import store_or_server
from ledgerflow.events import EventStore, EventStoreError, load_settings
from ledgerflow.events.workpools import (
    WorkPoolError,
    WorkPoolExists,
    WorkPoolNotFound,
    create_work_pool,
    create_work_queue,
    pause_work_pool,
    resume_work_pool,
)
from ledgerflow.projections.pool_queries import (
    WorkerInfo,
    WorkPoolInfo,
    get_work_pool,
    list_work_pools,
    list_workers,
    work_pool_info,
)
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["pool_app", "queue_app", "worker_app"]

pool_app = typer.Typer(help="Create, list, inspect, pause and resume work pools.", no_args_is_help=True)
queue_app = typer.Typer(help="Create and list the queues of a work pool.", no_args_is_help=True)
worker_app = typer.Typer(help="Run a worker of a work pool; list workers.", no_args_is_help=True)


class Backend(Protocol):
    def create_pool(self, name: str, concurrency_limit: int | None) -> WorkPoolInfo: ...
    def pools(self) -> list[WorkPoolInfo]: ...
    def pool(self, name: str) -> WorkPoolInfo: ...
    def change(self, name: str, action: str) -> WorkPoolInfo: ...
    def create_queue(self, pool: str, name: str, priority: int, concurrency_limit: int | None) -> WorkPoolInfo: ...
    def workers(self, pool: str | None) -> list[WorkerInfo]: ...


class _Local:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.rm = ReadModel(store)

    def create_pool(self, name: str, concurrency_limit: int | None) -> WorkPoolInfo:
        return work_pool_info(self.rm, create_work_pool(self.store, name, concurrency_limit, actor="cli"))

    def pools(self) -> list[WorkPoolInfo]:
        return list_work_pools(self.rm)

    def pool(self, name: str) -> WorkPoolInfo:
        return get_work_pool(self.rm, name)

    def change(self, name: str, action: str) -> WorkPoolInfo:
        do = {"pause": pause_work_pool, "resume": resume_work_pool}[action]
        return work_pool_info(self.rm, do(self.store, name, actor="cli"))

    def create_queue(self, pool: str, name: str, priority: int, concurrency_limit: int | None) -> WorkPoolInfo:
        return work_pool_info(self.rm, create_work_queue(self.store, pool, name, priority, concurrency_limit, actor="cli"))

    def workers(self, pool: str | None) -> list[WorkerInfo]:
        return list_workers(self.rm, pool)


class _Remote:
    def __init__(self, url: str, key: str | None) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60.0)

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body, params=params)
        except httpx.TransportError as exc:
            raise EventStoreError(f"the API server at {self.http.base_url} cannot be reached: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = str(orjson.loads(response.content)["detail"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = response.text[:200]
            kind = {404: WorkPoolNotFound, 409: WorkPoolExists}.get(response.status_code)
            if kind is WorkPoolNotFound:
                raise WorkPoolNotFound(path.split("/")[3])
            raise (kind or WorkPoolError)(detail)
        return orjson.loads(response.content)

    def create_pool(self, name: str, concurrency_limit: int | None) -> WorkPoolInfo:
        body = {"name": name, "concurrency_limit": concurrency_limit}
        return WorkPoolInfo.model_validate(self._call("POST", "/api/work-pools", body))

    def pools(self) -> list[WorkPoolInfo]:
        return [WorkPoolInfo.model_validate(p) for p in self._call("GET", "/api/work-pools")]

    def pool(self, name: str) -> WorkPoolInfo:
        return WorkPoolInfo.model_validate(self._call("GET", f"/api/work-pools/{name}"))

    def change(self, name: str, action: str) -> WorkPoolInfo:
        return WorkPoolInfo.model_validate(self._call("POST", f"/api/work-pools/{name}/{action}"))

    def create_queue(self, pool: str, name: str, priority: int, concurrency_limit: int | None) -> WorkPoolInfo:
        body = {"name": name, "priority": priority, "concurrency_limit": concurrency_limit}
        return WorkPoolInfo.model_validate(self._call("POST", f"/api/work-pools/{pool}/queues", body))

    def workers(self, pool: str | None) -> list[WorkerInfo]:
        return [WorkerInfo.model_validate(w) for w in self._call("GET", "/api/workers", params={"pool": pool} if pool else None)]


@contextmanager
def backend() -> Iterator[Backend]:
    with store_or_server(_Remote, _Local, missing=WorkPoolNotFound, listing="ledgerflow work-pool ls", refused=(WorkPoolError,)) as chosen:
        yield chosen


def _limit(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _json(value: Any) -> None:
    print(orjson.dumps(value).decode())


# -- work-pool -------------------------------------------------------------------------------

LimitOption = Annotated[int | None, typer.Option("--concurrency", min=1, max=10_000, help="Runs at once (default: no limit).")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


@pool_app.command("create")
def create_pool(name: Annotated[str, typer.Argument(help="The pool's name.")], concurrency: LimitOption = None) -> None:
    """Create a work pool; its runs are executed by `ledgerflow worker start --pool NAME`."""
    with backend() as pools:
        pool = pools.create_pool(name, concurrency)
    out.print(f"[green]created[/] work pool [bold]{escape(pool.name)}[/] (concurrency {_limit(pool.concurrency_limit)})")


@pool_app.command("ls")
def ls_pools(as_json: JsonOption = False) -> None:
    """List work pools with their runs due and running."""
    with backend() as pools:
        found = pools.pools()
    if as_json:
        _json([p.model_dump(mode="json") for p in found])
        return
    if not found:
        out.print("[dim]no work pools; create one with: ledgerflow work-pool create NAME[/]")
        return
    rows = table("NAME", "STATUS", "LIMIT", "QUEUES", "DUE", "RUNNING", right=("LIMIT", "DUE", "RUNNING"))
    for pool in found:
        rows.add_row(escape(pool.name), "[yellow]paused[/]" if pool.paused else "[green]active[/]",
                     _limit(pool.concurrency_limit), escape(", ".join(q.name for q in pool.queues)),
                     str(pool.due), str(pool.running))
    out.print(rows)


def _show_pool(pool: WorkPoolInfo) -> None:
    out.print(f"[bold]{escape(pool.name)}[/]  {'[yellow]paused[/]' if pool.paused else '[green]active[/]'}  "
              f"concurrency {_limit(pool.concurrency_limit)}  due {pool.due}  running {pool.running}")
    rows = table("QUEUE", "PRIORITY", "LIMIT", "DUE", "RUNNING", right=("PRIORITY", "LIMIT", "DUE", "RUNNING"))
    for queue in pool.queues:
        rows.add_row(escape(queue.name), str(queue.priority), _limit(queue.concurrency_limit), str(queue.due),
                     str(queue.running))
    out.print(rows)


@pool_app.command("inspect")
def inspect_pool(name: Annotated[str, typer.Argument(help="The pool's name.")], as_json: JsonOption = False) -> None:
    """A work pool: its queues, and the runs due and running in each."""
    with backend() as pools:
        pool = pools.pool(name)
    if as_json:
        _json(pool.model_dump(mode="json"))
        return
    _show_pool(pool)


@pool_app.command("pause")
def pause_pool(name: Annotated[str, typer.Argument(help="The pool's name.")]) -> None:
    """Workers claim no more runs of the pool (running runs go on)."""
    with backend() as pools:
        pool = pools.change(name, "pause")
    out.print(f"work pool [bold]{escape(pool.name)}[/] [yellow]paused[/]")


@pool_app.command("resume")
def resume_pool(name: Annotated[str, typer.Argument(help="The pool's name.")]) -> None:
    """Workers claim the pool's runs again."""
    with backend() as pools:
        pool = pools.change(name, "resume")
    out.print(f"work pool [bold]{escape(pool.name)}[/] [green]active[/]")


# -- work-queue ------------------------------------------------------------------------------

PoolOption = Annotated[str, typer.Option("--pool", help="The work pool.")]


@queue_app.command("create")
def create_queue(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    pool: PoolOption,
    priority: Annotated[int, typer.Option("--priority", min=1, max=1_000_000, help="1 is served first.")] = 1,
    concurrency: LimitOption = None,
) -> None:
    """Create a queue in a work pool; a deployment names it with --queue."""
    with backend() as pools:
        pools.create_queue(pool, name, priority, concurrency)
    out.print(f"[green]created[/] work queue [bold]{escape(name)}[/] in pool {escape(pool)} "
              f"(priority {priority}, concurrency {_limit(concurrency)})")


@queue_app.command("ls")
def ls_queues(pool: PoolOption, as_json: JsonOption = False) -> None:
    """List the queues of a work pool, first served first."""
    with backend() as pools:
        found = pools.pool(pool)
    if as_json:
        _json([q.model_dump(mode="json") for q in found.queues])
        return
    _show_pool(found)


# -- worker ----------------------------------------------------------------------------------


@worker_app.command("start")
def start(
    pool: PoolOption,
    queue: Annotated[list[str] | None, typer.Option("--queue", help="Only this queue (repeatable).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Runs executing at once.")] = 8,
    name: Annotated[str | None, typer.Option("--name", help="The worker's name (default host-pid).")] = None,
    heartbeat: Annotated[float, typer.Option("--heartbeat", min=0.1, max=3600, help="Seconds between heartbeats.")] = 10.0,
    runs_per_process: Annotated[int, typer.Option(
        "--runs-per-process", min=1, max=100_000,
        help="Runs a run process executes one after another before it ends (1: a fresh process per run). "
             "More is faster; modules a flow imports stay imported between its runs.")] = 1,
) -> None:
    """Execute the runs of a work pool here, each in a process of its own, until Ctrl-C or SIGTERM."""
    from ledgerflow.events.workpools import check_name
    from ledgerflow.runtime.worker import Worker, WorkerError, WorkerSettings

    settings = load_settings()
    if not settings.api_url:
        fail("a worker talks to a server: set LEDGERFLOW_API_URL", "and LEDGERFLOW_API_KEY (scope worker) if the server wants a key")
    try:
        for value, what in ((pool, "work pool"), *((q, "work queue") for q in queue or []), *([(name, "worker")] if name else [])):
            check_name(value, what)
    except WorkPoolError as exc:
        fail(str(exc))
    options: dict[str, Any] = {"name": name} if name else {}
    worker_settings = WorkerSettings(settings.api_url, pool, settings.api_key, tuple(queue or ()), limit,
                                     heartbeat_seconds=heartbeat, runs_per_process=runs_per_process, **options)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    worker = Worker(worker_settings, echo=lambda line: out.print(escape(line)))
    try:
        worker.run(stop)
    except (WorkerError, EventStoreError) as exc:
        fail(" ".join(str(exc).split()), "create the pool with: ledgerflow work-pool create NAME" if "no work pool" in str(exc) else None)


@worker_app.command("ls")
def ls_workers(
    pool: Annotated[str | None, typer.Option("--pool", help="Only this pool's workers.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Workers with their pool, last heartbeat, status and current runs."""
    with backend() as pools:
        found = pools.workers(pool)
    if as_json:
        _json([w.model_dump(mode="json") for w in found])
        return
    if not found:
        out.print("[dim]no workers yet; start one with: ledgerflow worker start --pool NAME[/]")
        return
    rows = table("NAME", "POOL", "STATUS", "LAST HEARTBEAT (UTC)", "RUNS", no_wrap=("LAST HEARTBEAT (UTC)",))
    for worker in found:
        status = "[green]online[/]" if worker.status == "online" else "[dim]offline[/]"
        rows.add_row(escape(worker.name), escape(worker.pool), status, _utc(worker.last_heartbeat),
                     escape(", ".join(worker.running)) or "-")
    out.print(rows)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
