"""A worker: executes the runs of one work pool on this machine, talking to the server over HTTP.

`ledgerflow worker start --pool NAME` runs `Worker.run`: every `poll_seconds` it asks the
server for due runs of its pool (`POST /api/work-pools/{pool}/due-runs`; the server applies
the pool's pause, queue priorities and concurrency limits) as long as it has room under its
`limit`, and hands each to a run process from the runner's fork server: a fresh one per run,
or with `runs_per_process` N > 1 one that executed up to N - 1 runs before (Celery's
max-tasks-per-child: the process's start, its connections and imports are paid once; each
run gets back the working directory, environment and `sys.path` the process started with, and
a flow file changed on disk is loaded again). That process executes the run exactly as the
server's runner does (`execute_flow_run`), with the log behind the API: the claim is one
`flow-run.Pending` append with the stream version it read, so of two workers racing for a run
one gets a 409 and leaves it. The run's events stream through `POST /api/events`.

The worker sends a heartbeat every `heartbeat_seconds` (its pool, queues, limit and current
runs) and a last one saying it stopped. It follows the log for `Cancelling` of its runs: it
sends the run's process SIGTERM (which the process turns into a cancel of the run, and then
ends), SIGKILL after `cancel_grace_seconds`, and records `Cancelled` if the process could not.
"""

from __future__ import annotations

import logging
import os
import signal
import site
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import httpx
import orjson

from ledgerflow.events import EventStoreError, Settings, StoredEvent, StoreUnavailable, load_settings
from ledgerflow.events.payloads import flow_run_stream
from ledgerflow.events.runs import RunStateConflict, propose_flow_run_state, read_flow_run
from ledgerflow.events.states import TERMINAL, StateType
from ledgerflow.runtime.control import ControlWatcher, FlowRunCancelled, FlowRunControl
from ledgerflow.runtime.remote import HttpEventLog
from ledgerflow.runtime.runner import ChildSettings, fork_server

__all__ = ["Worker", "WorkerError", "WorkerSettings"]

_log = logging.getLogger("ledgerflow.worker")
_CANCEL_REQUESTED = frozenset({StateType.CANCELLING, StateType.CANCELLED})
_END_GRACE = 10.0
"""Seconds a run process waiting for a next run has to end once the worker stops."""


class WorkerError(Exception):
    """The server refused the worker (no such pool, a key without the `worker` scope, ...)."""


@dataclass(frozen=True)
class WorkerSettings:
    api_url: str
    pool: str
    api_key: str | None = None
    queues: tuple[str, ...] = ()
    limit: int = 8
    """Runs executing at once."""
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    poll_seconds: float = 0.2
    heartbeat_seconds: float = 10.0
    cancel_grace_seconds: float = 10.0
    shutdown_grace_seconds: float = 30.0
    """On stop: how long running runs may go on before their processes are killed (Crashed)."""
    runs_per_process: int = 1
    """Runs one run process executes, one after another, before it ends (1: a fresh process each)."""


@dataclass
class _RunProcess:
    process: BaseProcess
    pipe: Connection
    """Run ids go in; what became of each run comes back."""


@dataclass
class _Run:
    host: _RunProcess
    control: FlowRunControl
    started: float
    outcome: str | None = None
    more: bool = False
    """The run's process said it takes another run."""
    cancel_sent: float | None = None


class WorkerApi:
    """The worker's side of `/api/work-pools/{pool}/due-runs` and `/api/workers/heartbeat`."""

    def __init__(self, settings: WorkerSettings) -> None:
        headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._http = httpx.Client(base_url=settings.api_url.rstrip("/"), headers=headers, timeout=30.0)
        self._settings = settings

    def due_runs(self, limit: int) -> list[tuple[str, dict[str, list[StoredEvent]]]]:
        """Runs to claim, each with the streams its process reads first (the run's, its deployment's)."""
        s = self._settings
        reply = self._post(f"/api/work-pools/{s.pool}/due-runs", {"worker": s.name, "queues": list(s.queues), "limit": limit})
        return [(str(run["id"]), {name: [StoredEvent.model_validate(e) for e in events]
                                  for name, events in run.get("streams", {}).items()}) for run in reply]

    def heartbeat(self, running: list[str], *, stopped: bool = False) -> None:
        s = self._settings
        self._post("/api/workers/heartbeat", {
            "pool": s.pool, "name": s.name, "queues": list(s.queues), "limit": s.limit, "running": running,
            "interval_seconds": s.heartbeat_seconds, "host": socket.gethostname(), "stopped": stopped,
        })

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"the API server at {self._http.base_url} cannot be reached: {exc}") from exc
        if response.status_code >= 500:
            raise StoreUnavailable(f"the API server answered HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                detail = str(orjson.loads(response.content)["detail"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                detail = response.text[:200]
            raise WorkerError(f"HTTP {response.status_code}: {detail}")
        return orjson.loads(response.content) if response.content else None

    def close(self) -> None:
        self._http.close()


def _serve_runs(
    pipe: Connection, child: ChildSettings, settings: Settings, executor: str, runs: int,
) -> None:
    """A run process: executes up to `runs` runs, one at a time, as the worker sends their ids
    (with the worker's place in the log, before anything about the run's claim, and the streams
    the server handed out with the run), and tells it how each went and whether it takes
    another. `settings`: what `child` makes of the environment, as the worker read it (reading
    it costs more than a run)."""
    os.environ.update(child.environ())
    from ledgerflow.runtime import config

    signal.signal(signal.SIGTERM, _cancel_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which stops its runs
    # The worker's heartbeats already prove that the key may append (scope `worker`).
    config.install(config.from_settings(settings, key_checked=True))
    try:
        for served in range(1, runs + 1):
            try:
                run_id, cursor, streams = pipe.recv()
            except EOFError:
                return
            with _as_started():
                outcome, clean = _execute(run_id, cursor, streams, pipe, executor)
            # Another run only after one that ended cleanly: a cancelled or crashed run may have
            # left threads behind, and a flow that took SIGTERM for itself took the worker's cancel.
            more = served < runs and clean and signal.getsignal(signal.SIGTERM) is _cancel_on_sigterm
            pipe.send((*outcome, more))
            if not more:
                return
    finally:
        config.reset()


def _execute(
    run_id: str, cursor: str | None, streams: dict[str, list[StoredEvent]], pipe: Connection, executor: str,
) -> tuple[tuple[str, ...], bool]:
    """Claim and execute the run; what to tell the worker, and whether it ended cleanly."""
    from ledgerflow.runtime import config
    from ledgerflow.runtime.execute import RunAlreadyClaimed, RunNotAdoptable, execute_flow_run

    runtime = config.current()
    if cursor is not None:
        runtime.watcher.start_after(cursor)
    if isinstance(runtime.log, HttpEventLog):
        runtime.log.prime(streams)
    try:
        state = execute_flow_run(run_id, executor=executor, chdir=True, on_claimed=lambda: pipe.send(("claimed",)))
    except RunAlreadyClaimed:
        return ("conflict",), True
    except (RunNotAdoptable, StoreUnavailable, FlowRunCancelled) as exc:
        return ("not run", " ".join(str(exc).split())), not isinstance(exc, FlowRunCancelled)
    return ("finished", state.name), state.is_completed() or state.is_failed()


@contextmanager
def _as_started() -> Iterator[None]:
    """Give the next run the process as this one found it: working directory, environment,
    import path, and none of the modules it imported from outside the Python installation (the
    flow's own code, loaded anew by the next run: another deployment's `flows` module, or a
    changed one). Installed packages, the standard library and ledgerflow stay imported."""
    folder, environ, path, modules = os.getcwd(), dict(os.environ), list(sys.path), set(sys.modules)
    try:
        yield
    finally:
        os.chdir(folder)
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        os.environ.update(environ)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if _is_user_code(name):
                del sys.modules[name]


_INSTALLED = tuple({os.path.join(os.path.realpath(folder), "") for folder in (
    sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(), site.getusersitepackages())})
"""Where the standard library and installed packages live (a virtual environment, the user's site)."""


def _is_user_code(module_name: str) -> bool:
    """Whether a module is the flows' own code: a Python file outside the installation and not
    ledgerflow. Compiled extensions stay (most cannot be initialised twice in one process)."""
    if module_name == "ledgerflow" or module_name.startswith("ledgerflow."):
        return False
    file = getattr(sys.modules.get(module_name), "__file__", None)
    if file is None or not file.endswith(".py"):
        return False
    path = os.path.realpath(file)
    return not path.startswith(_INSTALLED) and f"{os.sep}site-packages{os.sep}" not in path


def _cancel_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM from the worker: the run was cancelled. Raised once, into the flow's main thread
    (a flow stuck in one long call stops there); should it cut short the engine's own record of
    the end, the worker records `Cancelled` once the process is gone."""
    from ledgerflow.runtime.context import flow_run_var

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    reason = "the worker stopped the run's process: the run was cancelled"
    context = flow_run_var.get()
    if context is not None:
        context.control.request_stop(reason)
    raise FlowRunCancelled(reason)


class Worker:
    """Polls, claims and executes runs of one pool until `stop` is set; see the module doc."""

    def __init__(self, settings: WorkerSettings, echo: Callable[[str], None] = print) -> None:
        if settings.limit < 1:
            raise ValueError("a worker's limit is at least 1")
        if settings.runs_per_process < 1:
            raise ValueError("a run process executes at least 1 run")
        self.settings = settings
        self.echo = echo
        self.api = WorkerApi(settings)
        self.log = HttpEventLog(settings.api_url, settings.api_key)
        self.watcher = ControlWatcher(self.log, interval=0.5)
        store = load_settings()
        self._child = ChildSettings(str(store.home), store.store_url, settings.api_url, settings.api_key)
        self._run_settings = store.model_copy(
            update={"database_url": store.store_url, "api_url": settings.api_url, "api_key": settings.api_key})
        self.runs: dict[str, _Run] = {}
        self._idle: list[_RunProcess] = []
        """Run processes waiting for their next run."""
        self._retiring: list[_RunProcess] = []
        """Run processes that served their last run and are ending."""
        self.claimed = 0
        self.finished = 0
        self.conflicts = 0
        self._running: tuple[str, ...] = ()
        """The runs' ids as the heartbeat thread reports them (`runs` changes under it)."""

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set; then let running runs finish (up to the shutdown grace).
        Raises WorkerError when the server refuses the worker at its first heartbeat."""
        self.api.heartbeat([])
        s = self.settings
        self.echo(f"worker {s.name} started: pool {s.pool}" + (f", queues {', '.join(s.queues)}" if s.queues else "")
                  + f", up to {s.limit} runs at once")
        stopped = threading.Event()
        beating = threading.Thread(target=self._beat, args=(stopped,), name="ledgerflow-worker-heartbeat", daemon=True)
        beating.start()
        try:
            while not stop.is_set():
                self._step()
                self._wait(s.poll_seconds, stop)
            self._drain()
        finally:
            stopped.set()
            beating.join()
            try:
                self.api.heartbeat([], stopped=True)
            except (EventStoreError, WorkerError) as exc:
                _log.warning("could not tell the server that worker %s stopped: %s", s.name, exc)
            self.watcher.close()
            self.api.close()
            self.log.close()
        self.echo(f"worker {s.name} stopped: {self.claimed} runs claimed, {self.finished} finished, "
                  f"{self.conflicts} claimed by another worker first")

    # -- one round ----------------------------------------------------------------------------

    def _beat(self, stopped: threading.Event) -> None:
        """Heartbeats from a thread of their own: a busy round of the loop does not delay them."""
        while not stopped.wait(self.settings.heartbeat_seconds):
            try:
                self.api.heartbeat(list(self._running))
            except (EventStoreError, WorkerError) as exc:
                _log.warning("worker %s: heartbeat not sent: %s", self.settings.name, " ".join(str(exc).split()))

    def _step(self) -> None:
        self._collect()
        self._enforce_cancels()
        try:
            room = self.settings.limit - len(self.runs)
            if room > 0:
                for run_id, streams in self.api.due_runs(room):
                    if run_id not in self.runs:
                        self._launch(run_id, streams)
        except (EventStoreError, WorkerError) as exc:  # a server blip: try again next round
            _log.warning("worker %s: %s", self.settings.name, " ".join(str(exc).split()))
        self._running = tuple(self.runs)

    def _launch(self, run_id: str, streams: dict[str, list[StoredEvent]]) -> None:
        control = FlowRunControl(flow_run_stream(run_id), None)
        self.watcher.watch(control)  # before the claim: a cancel after it is not missed
        host = self._idle.pop() if self._idle else self._start_process()
        order = (run_id, self.watcher.cursor, streams)
        try:
            host.pipe.send(order)
        except OSError:  # it ended while it waited (killed from outside): the run goes to a new one
            self._retiring.append(host)
            host = self._start_process()
            host.pipe.send(order)
        self.runs[run_id] = _Run(host, control, time.monotonic())

    def _start_process(self) -> _RunProcess:
        ours, theirs = fork_server().Pipe()
        process = fork_server().Process(
            target=_serve_runs,
            args=(theirs, self._child, self._run_settings, self.settings.name, self.settings.runs_per_process),
            name="ledgerflow-run-process", daemon=False,
        )
        process.start()
        theirs.close()
        return _RunProcess(process, ours)

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        """Sleep until a run reports or ends, or `seconds` pass."""
        waitables: list[Any] = [run.host.pipe for run in self.runs.values()]
        waitables += [run.host.process.sentinel for run in self.runs.values()]
        if waitables:
            wait(waitables, timeout=seconds)
        else:
            stop.wait(seconds)

    def _collect(self) -> None:
        """Read what the run processes reported; settle the runs that ended, keep their
        processes for the next runs or let them go; reap the processes that ended."""
        for run_id, run in list(self.runs.items()):
            host = run.host
            try:
                while run.outcome is None and host.pipe.poll():
                    self._reported(run_id, run, host.pipe.recv())
            except (EOFError, OSError):
                pass  # the process is gone: whatever it sent was read
            alive = host.process.is_alive()
            if run.outcome is None and alive:
                continue
            self.watcher.unwatch(run.control)
            del self.runs[run_id]
            self._running = tuple(self.runs)
            if alive and run.more and run.cancel_sent is None:
                self._idle.append(host)
            else:
                self._retiring.append(host)
            if not alive:
                host.process.join()
            self._ended(run_id, run)
        for host in [h for h in self._idle + self._retiring if not h.process.is_alive()]:
            host.process.join()
            host.pipe.close()
            if host in self._idle:
                self._idle.remove(host)
            else:
                self._retiring.remove(host)

    def _reported(self, run_id: str, run: _Run, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "claimed":
            self.claimed += 1
            self.echo(f"claimed run {run_id}")
            return
        run.outcome, run.more = kind, bool(message[-1])
        if kind == "finished":
            self.finished += 1
            self.echo(f"finished run {run_id}: {message[1]} ({time.monotonic() - run.started:.1f}s)")
        elif kind == "conflict":
            self.conflicts += 1
        else:
            self.echo(f"did not run {run_id}: {message[1]}")

    def _ended(self, run_id: str, run: _Run) -> None:
        if run.cancel_sent is not None:
            self._settle(run_id, "Cancelled", "cancelled; the worker stopped the run's process")
        elif run.outcome is None:
            code = run.host.process.exitcode
            if not self._claimed_here(run_id):
                self.echo(f"run {run_id} not started: its process ended before claiming it (exit code {code}); "
                          "the server hands it out again")
                return
            self.echo(f"run {run_id}: its process ended without a final state (exit code {code})")
            self._settle(run_id, "Crashed", f"the run's process on worker {self.settings.name} ended with exit code {code}")

    def _claimed_here(self, run_id: str) -> bool:
        """Whether the run's latest claim is this worker's (a process may end before it claims,
        and another worker may claim the run after that)."""
        try:
            events = read_flow_run(self.log, run_id).events
        except EventStoreError as exc:
            _log.warning("run %s: could not read it: %s", run_id, exc)
            return True  # as before the check: its process ended, so it is taken for crashed
        claim = next((e for e in reversed(events) if e.type == "flow-run.Pending"), None)
        return claim is not None and claim.data.get("executor") == self.settings.name

    def _settle(self, run_id: str, name: str, message: str) -> None:
        """Record `name` unless the run already ended (its process usually records its own end)."""
        try:
            state = read_flow_run(self.log, run_id).state
            if state is None or state.type not in TERMINAL:
                propose_flow_run_state(self.log, run_id, name, message=message, actor=f"worker {self.settings.name}")
        except (RunStateConflict, EventStoreError) as exc:
            _log.warning("run %s: could not record %s: %s", run_id, name, exc)

    # -- cancels and shutdown -----------------------------------------------------------------

    def _enforce_cancels(self) -> None:
        now = time.monotonic()
        for run_id, run in self.runs.items():
            state = run.control.state
            process = run.host.process
            if state is None or state.type not in _CANCEL_REQUESTED or not process.is_alive():
                continue
            if run.cancel_sent is None:
                self.echo(f"cancelling run {run_id}: stopping its process")
                run.cancel_sent = now
                process.terminate()
            elif now - run.cancel_sent > self.settings.cancel_grace_seconds:
                self.echo(f"run {run_id} did not stop within {self.settings.cancel_grace_seconds:g}s: killing it")
                process.kill()

    def _drain(self) -> None:
        """Stopped: claim nothing more; let running runs finish, then kill what is left; then
        end the run processes that wait for a next run."""
        if self.runs:
            self.echo(f"worker {self.settings.name} stopping: waiting up to {self.settings.shutdown_grace_seconds:g}s "
                      f"for {len(self.runs)} running runs")
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self.runs and time.monotonic() < deadline:
            self._collect()
            self._enforce_cancels()
            self._wait(0.1, threading.Event())
        for run in self.runs.values():
            run.host.process.kill()
        while self.runs:
            self._collect()
            self._wait(0.1, threading.Event())
        for host in self._idle + self._retiring:
            host.pipe.close()  # the process reads the end of its pipe and ends
        for host in self._idle + self._retiring:
            host.process.join(_END_GRACE)
            if host.process.is_alive():
                host.process.kill()
                host.process.join()
        self._idle, self._retiring = [], []
