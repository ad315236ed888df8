"""Transactions (Prefect 3's `prefect.transactions`): tasks that succeed inside a
`with transaction():` block are staged in it; when the block exits normally the transaction
commits (each staged task's `on_commit` hooks run), when it exits with an error it rolls back
(each staged task's `on_rollback` hooks run, newest first, and the task run becomes
`RolledBack`), even though the failure was outside those tasks.

The lifecycle is in the log, in the stream of the flow run that opened the transaction:
`transaction.opened`, then `transaction.committed` or `transaction.rolled-back`, each naming
the transaction, its key and the task runs it committed or rolled back; a rolled back task run
also gets its `task-run.RolledBack` state. A transaction with a `key` that commits records that
in the stream `transaction-<key>`; a later transaction with the same key finds the record and
is committed from the start (`txn.is_committed()`), unless `overwrite=True`: this is how a
block of work is made to run once.

Commit modes (as in Prefect): `LAZY` (the default) commits staged work when the outermost
transaction exits; `EAGER` commits each task as it completes (a later failure cannot roll it
back); `OFF` commits nothing by itself: unless the code calls `txn.commit()`, the outermost
transaction rolls back when it exits.

Imports `events` and the runtime's context; tasks.py calls `join_transaction` when a task
run completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self

from ledgerflow.events import NewEvent, StreamAppend
from ledgerflow.events.model import new_id
from ledgerflow.runtime import config
from ledgerflow.runtime.context import FlowRunContext, flow_run_var
from ledgerflow.runtime.logging import get_logger, run_logger

if TYPE_CHECKING:
    from ledgerflow.runtime.task_engine import TaskRun

__all__ = [
    "CommitMode",
    "IsolationLevel",
    "Transaction",
    "TransactionState",
    "atransaction",
    "get_transaction",
    "join_transaction",
    "transaction",
]


class CommitMode(StrEnum):
    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class IsolationLevel(StrEnum):
    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"
    """Transactions with the same key run one at a time (within this process)."""


class TransactionState(StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


_NOT_SET: Any = object()
_current: ContextVar[Transaction | None] = ContextVar("ledgerflow_transaction", default=None)
_STREAM_KEY = re.compile(r"[A-Za-z0-9._:@/+-]{1,180}")
_locks_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def record_stream(key: str) -> str:
    """The stream that records the commits of transactions with this key."""
    if _STREAM_KEY.fullmatch(key):
        return f"transaction-{key}"
    return f"transaction-sha256-{hashlib.sha256(key.encode()).hexdigest()}"


def _key_lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _call(hook: Callable[..., Any], *args: Any) -> None:
    """Call a hook; an async one is run to completion (on a thread of its own when this
    thread already runs an event loop)."""
    outcome = hook(*args)
    if not inspect.isawaitable(outcome):
        return
    awaitable = outcome

    async def wait() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(wait())
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(wait())
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name="ledgerflow-hook")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


class Transaction:
    """One transaction: `with transaction() as txn:` (or a task run staged in one)."""

    def __init__(
        self,
        key: str | None = None,
        commit_mode: CommitMode | None = None,
        isolation_level: IsolationLevel | None = None,
        overwrite: bool = False,
        write_on_commit: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.id = new_id()
        self.key = key
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger
        self.state = TransactionState.PENDING
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Callable[..., Any]] = []
        self.on_rollback_hooks: list[Callable[..., Any]] = []
        self._values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._parent: Transaction | None = None
        self._token: Token[Transaction | None] | None = None
        self._flow_run: FlowRunContext | None = None
        self._task_run: TaskRun | None = None
        self._record: dict[str, Any] | None = None
        self._lock: threading.Lock | None = None
        self._children_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"

    # -- values shared within the transaction ------------------------------------------------

    def set(self, name: str, value: Any) -> None:
        """Keep a value for the rest of the transaction (its hooks see it)."""
        self._values[name] = value

    def get(self, name: str, default: Any = _NOT_SET) -> Any:
        """A value set in this transaction or, failing that, in one of its parents."""
        if name in self._values:
            return self._values[name]
        if self._parent is not None:
            return self._parent.get(name, default)
        if default is _NOT_SET:
            raise ValueError(f"Could not retrieve value for unknown key: {name}")
        return default

    # -- state ----------------------------------------------------------------------------------

    def is_committed(self) -> bool:
        return self.state == TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state == TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        return self.state == TransactionState.STAGED

    def is_pending(self) -> bool:
        return self.state == TransactionState.PENDING

    def is_active(self) -> bool:
        return self.state == TransactionState.ACTIVE

    def get_parent(self) -> Transaction | None:
        return self._parent

    def add_child(self, transaction: Transaction) -> None:
        with self._children_lock:
            self.children.append(transaction)

    def read(self) -> Any:
        """The value the committed record of this transaction's key holds (None if none)."""
        if self._record is None or not self._record.get("result"):
            return None
        return self._runtime().results.load_ref(self._record["result"])

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._token is not None:
            raise RuntimeError("Context already entered. Context enter calls cannot be nested.")
        parent = _current.get()
        self._parent = parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent is not None else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = parent.isolation_level if parent is not None else IsolationLevel.READ_COMMITTED
        if parent is not None:
            parent.add_child(self)
        self._flow_run = flow_run_var.get()
        self.begin()
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        try:
            if exc is not None:
                self.rollback(exc)
                return
            if self.commit_mode == CommitMode.EAGER:
                self.commit()
            if self._parent is not None:
                return  # the parent commits or rolls back its children
            if self.commit_mode == CommitMode.OFF:
                self.rollback()  # nobody committed it
            else:
                self.commit()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        await asyncio.to_thread(self.__exit__, exc_type, exc, tb)

    def begin(self) -> None:
        """Take the key's lock (SERIALIZABLE), look the key's record up, record the opening."""
        if self.key is not None and self.isolation_level == IsolationLevel.SERIALIZABLE:
            self._lock = _key_lock(self.key)
            self._lock.acquire()
        self.state = TransactionState.ACTIVE
        if self.key is not None and not self.overwrite:
            self._record = self._find_record()
            if self._record is not None:
                self.state = TransactionState.COMMITTED
        self._emit("transaction.opened", {
            "commit_mode": str(self.commit_mode), "isolation_level": str(self.isolation_level),
            "committed": self.state == TransactionState.COMMITTED,
        })

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Callable[..., Any]] | None = None,
        on_commit_hooks: list[Callable[..., Any]] | None = None,
    ) -> None:
        """Stage a value (and hooks) to be committed or rolled back with the transaction."""
        if self.state == TransactionState.COMMITTED:
            return
        self._staged_value = value
        self.on_rollback_hooks += on_rollback_hooks or []
        self.on_commit_hooks += on_commit_hooks or []
        self.state = TransactionState.STAGED

    def commit(self) -> bool:
        """Commit the staged children, run the commit hooks, write the key's record."""
        if self.state == TransactionState.ROLLED_BACK:
            return False
        if self.state == TransactionState.COMMITTED:
            return True
        try:
            for child in list(self.children):
                child.commit()
            for hook in self.on_commit_hooks:
                self._run_hook(hook, "commit")
            if self.key is not None and self.write_on_commit:
                self._write_record()
            self.state = TransactionState.COMMITTED
        except Exception:  # noqa: BLE001 - as in Prefect: logged, then rolled back
            self._logger().exception("An error was encountered while committing transaction %r", self.key)
            self.rollback()
            return False
        self._emit("transaction.committed", {"task_run_ids": self._task_run_ids()})
        return True

    def rollback(self, error: BaseException | None = None) -> bool:
        """Run the rollback hooks (newest first), then roll the children back."""
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self._run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(list(self.children)):
                child.rollback()
        except Exception:  # noqa: BLE001 - as in Prefect: logged, the rollback stops
            self._logger().exception("An error was encountered while rolling back transaction %r", self.key)
            return False
        finally:
            if self._task_run is not None and self.state == TransactionState.ROLLED_BACK:
                self._task_run._transition("RolledBack", message="Task rolled back as part of transaction")
        data: dict[str, Any] = {"task_run_ids": self._task_run_ids()}
        if error is not None:
            data["error"] = {"type": type(error).__name__, "message": str(error)}
        self._emit("transaction.rolled-back", data)
        return True

    # -- internals ------------------------------------------------------------------------------

    def _run_hook(self, hook: Callable[..., Any], kind: str) -> None:
        name = getattr(hook, "__name__", repr(hook))
        logger = self._logger()
        logger.info("Running %s hook %r", kind, name)
        _call(hook, self)
        logger.info("%s hook %r finished running successfully", kind.capitalize(), name)

    def _logger(self) -> logging.Logger | logging.LoggerAdapter[Any]:
        if self.logger is not None:
            return self.logger
        flow_run = self._flow_run
        if flow_run is not None:
            return run_logger(flow_run, self._task_run.info if self._task_run is not None else None)
        return get_logger()

    def _task_run_ids(self) -> list[str]:
        return [child._task_run.task_run_id_text for child in self.children if child._task_run is not None]

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        """A lifecycle event in the stream of the flow run (task-level ones write none)."""
        flow_run = self._flow_run
        if flow_run is None or self._task_run is not None:
            return
        data.update(flow_run_id=flow_run.flow_run_id, transaction_id=str(self.id))
        if self.key is not None:
            data["key"] = self.key
        if self._parent is not None:
            data["parent_transaction_id"] = str(self._parent.id)
        flow_run.emit(event_type, data)

    def _runtime(self) -> config.Runtime:
        return self._flow_run.runtime if self._flow_run is not None else config.current()

    def _find_record(self) -> dict[str, Any] | None:
        assert self.key is not None
        runtime = self._runtime()
        runtime.writer.flush()
        found = runtime.log.read_stream(record_stream(self.key), types=["transaction.committed"])
        return dict(found[-1].data) if found else None

    def _write_record(self) -> None:
        assert self.key is not None
        runtime = self._runtime()
        record: dict[str, Any] = {"key": self.key, "transaction_id": str(self.id)}
        if self._flow_run is not None:
            record["flow_run_id"] = self._flow_run.flow_run_id
        if self._staged_value is not None:
            record["result"] = runtime.results.persist(self._staged_value)
            runtime.results.sync()
        runtime.log.append_streams([StreamAppend(record_stream(self.key), [NewEvent(type="transaction.committed", data=record)])])
        self._record = record


def get_transaction() -> Transaction | None:
    """The transaction the code runs in, or None."""
    return _current.get()


@contextmanager
def transaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | None = None,
    isolation_level: IsolationLevel | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Iterator[Transaction]:
    """Open a transaction: `with transaction(key=...) as txn:`. `store` must be None: records
    are kept in the event log."""
    if store is not None:
        raise TypeError("transaction(store=...) is not supported: ledgerflow keeps transaction records in its event log")
    with Transaction(key, commit_mode, isolation_level, overwrite, write_on_commit, logger) as txn:
        yield txn


def atransaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | None = None,
    isolation_level: IsolationLevel | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Transaction:
    """The transaction for `async with atransaction(...) as txn:`."""
    if store is not None:
        raise TypeError("atransaction(store=...) is not supported: ledgerflow keeps transaction records in its event log")
    return Transaction(key, commit_mode, isolation_level, overwrite, write_on_commit, logger)


def join_transaction(run: TaskRun, value: Any) -> None:
    """A task run completed inside a transaction: stage it there with its task's hooks, so it
    commits or rolls back with the transaction (at once when that already happened, or in
    EAGER mode)."""
    parent = _current.get()
    if parent is None:
        return
    child = Transaction(commit_mode=parent.commit_mode, isolation_level=parent.isolation_level)
    child._parent = parent
    child._flow_run = run.flow_run
    child._task_run = run
    child.state = TransactionState.ACTIVE
    child.stage(value, list(getattr(run.task, "on_rollback_hooks", [])), list(getattr(run.task, "on_commit_hooks", [])))
    parent.add_child(child)
    if parent.state == TransactionState.ROLLED_BACK:
        child.rollback()
    elif parent.state == TransactionState.COMMITTED or parent.commit_mode == CommitMode.EAGER:
        child.commit()
