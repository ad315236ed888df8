"""Futures for submitted task runs (`task.submit(...)`, `task.map(...)`)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Generic, TypeVar
from uuid import UUID

from ledgerflow.runtime.states import State

__all__ = ["TaskFuture", "unmapped", "wait"]

R = TypeVar("R")


class TaskFuture(Generic[R]):
    def __init__(self, task_run_id: UUID, future: Future[State]) -> None:
        self.task_run_id = task_run_id
        self._future = future

    @property
    def state(self) -> State:
        """The final state once done; the run waits for it."""
        return self._future.result()

    def wait(self, timeout: float | None = None) -> None:
        self._future.exception(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        state: State = self._future.result(timeout)
        return state.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        return f"TaskFuture({self.task_run_id})"


class unmapped:
    """Pass this value whole to every mapped call instead of iterating over it."""

    def __init__(self, value: Any) -> None:
        self.value = value


def wait(futures: list[TaskFuture[Any]], timeout: float | None = None) -> None:
    for future in futures:
        future.wait(timeout)
