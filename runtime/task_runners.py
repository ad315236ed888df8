"""Task runners: where submitted task runs execute."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ThreadPoolTaskRunner"]


class ThreadPoolTaskRunner:
    """Submitted tasks run on a thread pool (the default), with the caller's run context.

    Without `max_workers` the pool grows to as many threads as tasks wait to run, as Prefect's
    does: submitted tasks that wait on I/O never queue behind each other."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future[Any]] = []

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers or sys.maxsize, thread_name_prefix="ledgerflow-task")
        context = contextvars.copy_context()
        future = self._executor.submit(context.run, fn)
        self._futures.append(future)
        return future

    def fresh(self) -> ThreadPoolTaskRunner:
        """A runner of the same configuration for one flow run."""
        return ThreadPoolTaskRunner(self.max_workers)

    def shutdown(self, wait: bool = True, cancel_queued: bool = False) -> None:
        """Wait for every submitted run to finish; drop those not started with `cancel_queued`
        (or `wait=False`, which also returns at once)."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=cancel_queued or not wait)
            self._executor = None
