"""The built-in runner: executes requested runs that are due, each in a process of its own.

`ledgerflow server start` runs one for the `default` work pool, so schedules, manual runs and
replays need no separate worker. Whoever composes it says where due runs come from (the server
asks its runs projection); each is executed by `execute_flow_run` (the code of
`ledgerflow flow-run execute`) in a child process, at most `concurrency` at once. A run that
another runner or worker claims first is simply not executed here.

With `ChildSettings.api_url` the children write and read through that API server (the
server's own runner on PostgreSQL passes its own URL): they hold no database connection, so a
hundred runs at once do not each take one of PostgreSQL's `max_connections`.

Children come from a multiprocessing fork server that has ledgerflow imported already: a run
starts in milliseconds instead of the ~0.3 s of a fresh interpreter, and a crashing flow
(segfault, OOM kill) takes only its own process down.

A child started ahead of its run's time (whoever composes the runner may hand it runs due
soon) loads the flow, then, given a `claim` function, hands the waiting run back to the
runner over a pipe instead of claiming it itself: when it is due the runner claims every such
run in one append (`claim_due_runs`) and tells each child its claim. A hundred runs due at once
then cost one write at their time, not a hundred contending ones (and on PostgreSQL not a
hundred requests each through the server). A run the runner does not claim (a deployment's
concurrency limit, a run that changed meanwhile, the database away) its child claims itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from ledgerflow.events.errors import EventStoreError
from ledgerflow.events.model import StoredEvent, utcnow
from ledgerflow.events.runs import RunClaim
from ledgerflow.events.service import LoopService

__all__ = ["ChildSettings", "RunLauncher", "fork_server"]

_log = logging.getLogger("ledgerflow.runner")
_STOP_GRACE = 10.0


@dataclass(frozen=True)
class ChildSettings:
    """What a child process needs to reach the same log and results as its parent."""

    home: str
    store_url: str
    api_url: str | None = None
    api_key: str | None = None
    nice: int = 0
    """Niceness the run process adds to its own (the server's runner: `LEDGERFLOW_RUNNER_NICE`)."""

    def environ(self) -> dict[str, str]:
        values = {"LEDGERFLOW_HOME": self.home, "LEDGERFLOW_DATABASE_URL": self.store_url}
        if self.api_url:
            values["LEDGERFLOW_API_URL"] = self.api_url
        if self.api_key:
            values["LEDGERFLOW_API_KEY"] = self.api_key
        return values


class _ClaimedByRunner:
    """A child's `Claimer`: the runner claims the run when due and answers with the claim, or
    None (then the child claims it itself, as when the runner is gone)."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe

    def __call__(self, claim: RunClaim, due: datetime) -> StoredEvent | None:
        try:
            self._pipe.send((claim, due))
            answer: StoredEvent | None = self._pipe.recv()
        except (EOFError, OSError):
            return None
        return answer


def _execute_in_child(run_id: str, settings: ChildSettings, pipe: Connection | None = None) -> None:
    """The child process: a fresh runtime from the parent's settings, then the run."""
    if settings.nice:
        os.nice(settings.nice)
    for name in ("LEDGERFLOW_API_URL", "LEDGERFLOW_API_KEY"):
        os.environ.pop(name, None)
    os.environ.update(settings.environ())
    from ledgerflow.events.errors import StoreUnavailable
    from ledgerflow.runtime import config
    from ledgerflow.runtime.execute import RunNotAdoptable, execute_flow_run

    try:
        state = execute_flow_run(run_id, chdir=True, claimer=_ClaimedByRunner(pipe) if pipe is not None else None)
    except RunNotAdoptable as exc:  # claimed elsewhere, cancelled meanwhile: nothing to do
        _log.info("run %s not executed: %s", run_id, exc)
        return
    except StoreUnavailable as exc:  # one line per child, not a traceback each
        _log.warning("run %s not started, the event store is unavailable: %s", run_id, exc)
        raise SystemExit(1) from None
    finally:
        config.reset()
    if not state.is_completed():
        raise SystemExit(1)


_context_lock = threading.Lock()
_context: ForkServerContext | None = None


def fork_server() -> ForkServerContext:
    """The fork server that starts run processes (ledgerflow already imported there)."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            # "__main__": the fork server imports the program's main module once; otherwise every
            # child would import it again (for the `ledgerflow` command: the whole CLI, seconds).
            # httpcore and IDNA: what a worker's run process imports on its first request otherwise.
            context.set_forkserver_preload(["__main__", "ledgerflow.runtime.runner", "ledgerflow.runtime.execute",
                                             "ledgerflow.runtime.deployments", "ledgerflow.runtime.worker",
                                             "httpcore", "encodings.idna"])
            _context = context
        return _context


class RunLauncher(LoopService):
    """Every `interval` seconds, starts due runs up to `concurrency` running at once; with
    `claim` (`claim_due_runs` over a log), claims the runs its children wait with when due."""

    def __init__(
        self,
        due: Callable[[int], Sequence[str]],
        settings: ChildSettings,
        *,
        concurrency: int = 8,
        interval: float = 0.1,
        name: str = "runner",
        claim: Callable[[Sequence[RunClaim]], dict[str, StoredEvent]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        super().__init__(name, self._launch_due, interval, error_pause=1.0, on_stop=self._stop_children)
        self._due = due
        self._settings = settings
        self._claim = claim
        self.concurrency = concurrency
        self._running: dict[str, BaseProcess] = {}
        self._pipes: dict[str, Connection] = {}
        self._waiting: dict[str, tuple[RunClaim, datetime]] = {}
        self.launched = 0
        self.claimed = 0

    @property
    def running(self) -> list[str]:
        """Ids of the runs whose processes have not ended yet."""
        self._reap()
        return list(self._running)

    def _reap(self) -> None:
        for run_id, process in list(self._running.items()):
            if not process.is_alive():
                process.join()
                del self._running[run_id]
                self._waiting.pop(run_id, None)
                if (pipe := self._pipes.pop(run_id, None)) is not None:
                    pipe.close()

    def _claim_waiting(self) -> None:
        """Take in the runs children wait with; claim those now due, in one append."""
        for run_id, pipe in self._pipes.items():
            try:
                while pipe.poll():
                    self._waiting[run_id] = pipe.recv()
            except (EOFError, OSError):
                continue  # the child ended: reaped next time
        now = utcnow()
        due = [(run_id, claim) for run_id, (claim, when) in self._waiting.items() if when <= now]
        if not due or self._claim is None:
            return
        claimed: dict[str, StoredEvent] = {}
        try:
            claimed = self._claim([claim for _, claim in due])
        except EventStoreError as exc:
            _log.warning("could not claim %d due runs, their processes claim them: %s", len(due), exc)
        finally:  # every waiting child hears an answer, whatever went wrong here
            self.claimed += len(claimed)
            for run_id, claim in due:
                del self._waiting[run_id]
                try:
                    self._pipes[run_id].send(claimed.get(claim.flow_run_id))
                except OSError:
                    pass  # the child ended meanwhile

    def _launch_due(self) -> None:
        self._reap()
        self._claim_waiting()
        room = self.concurrency - len(self._running)
        if room <= 0:
            return
        # Ask for more than there is room for: runs this runner is executing are still due
        # until their child has claimed them.
        for run_id in self._due(room + len(self._running)):
            if room <= 0:
                break
            if run_id in self._running:
                continue
            context = fork_server()
            ours, theirs = context.Pipe() if self._claim is not None else (None, None)
            process = context.Process(
                target=_execute_in_child, args=(run_id, self._settings, theirs), name=f"ledgerflow-run-{run_id}",
                daemon=False,
            )
            process.start()
            self._running[run_id] = process
            if ours is not None and theirs is not None:
                theirs.close()  # the child has its own copy: ours reads EOF once the child ends
                self._pipes[run_id] = ours
            self.launched += 1
            room -= 1

    def _stop_children(self) -> None:
        """Let running flows finish for a grace period; then stop them (they end Crashed)."""
        for process in self._running.values():
            process.join(_STOP_GRACE / max(len(self._running), 1))
        for run_id, process in self._running.items():
            if process.is_alive():
                _log.warning("stopping run %s: the runner is shutting down", run_id)
                process.terminate()
                process.join(5)
        self._running.clear()
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()
        self._waiting.clear()
