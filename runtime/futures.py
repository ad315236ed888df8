"""Futures of submitted task runs (`task.submit(...)`, `task.map(...)`), as Prefect has them.

`future.wait(timeout)` returns when the run ends or the timeout passes (it never raises);
`future.result()` waits and gives the value or raises the run's error; `future.state` is the
run's state now (Pending until it ends). `wait(futures, timeout)` returns `(done, not_done)`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar
from uuid import UUID

from ledgerflow.runtime.states import Pending, State

__all__ = [
    "DoneAndNotDoneFutures",
    "TaskFuture",
    "TaskFutureList",
    "as_completed",
    "resolve_futures_to_states",
    "wait",
]

R = TypeVar("R")


class TaskFuture(Generic[R]):
    def __init__(self, task_run_id: UUID, future: concurrent.futures.Future[State]) -> None:
        self.task_run_id = task_run_id
        self._future = future

    @property
    def state(self) -> State:
        """The run's state: its final one once it ended, Pending before."""
        if self._future.done():
            final: State = self._future.result()
            return final
        return Pending()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the run to end, or for `timeout` seconds, whichever comes first."""
        concurrent.futures.wait([self._future], timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The run's value once it ended (TimeoutError if it has not within `timeout`)."""
        state: State = self._future.result(timeout)
        return state.resolve(raise_on_failure)  # type: ignore[no-any-return]

    def done(self) -> bool:
        return self._future.done()

    def add_done_callback(self, callback: Callable[[TaskFuture[R]], None]) -> None:
        self._future.add_done_callback(lambda _: callback(self))

    def __repr__(self) -> str:
        return f"TaskFuture({self.task_run_id}, {'done' if self.done() else 'running'})"


class TaskFutureList(list[TaskFuture[R]]):
    """What `.map()` returns: a list of futures that can also be waited for as one."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        done, not_done = wait(self, timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(self)} task runs did not finish within {timeout} seconds")
        return [future.result(raise_on_failure=raise_on_failure) for future in self]


class DoneAndNotDoneFutures(NamedTuple):
    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait until every future is done or `timeout` passes; which are done and which are not."""
    given = list(futures)
    by_inner = {future._future: future for future in given}  # noqa: SLF001 - same module
    done, not_done = concurrent.futures.wait(list(by_inner), timeout)
    return DoneAndNotDoneFutures({by_inner[f] for f in done}, {by_inner[f] for f in not_done})


def as_completed(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> Iterator[TaskFuture[Any]]:
    """The futures in the order their runs end."""
    by_inner = {future._future: future for future in futures}  # noqa: SLF001 - same module
    for inner in concurrent.futures.as_completed(by_inner, timeout):
        yield by_inner[inner]


def resolve_futures_to_states(value: Any) -> Any:
    """`value` with every future in it (in lists, tuples, sets and dict values) replaced by
    its run's final state, waiting for each."""
    if isinstance(value, TaskFuture):
        value.wait()
        return value.state
    if isinstance(value, list):
        return [resolve_futures_to_states(item) for item in value]
    if isinstance(value, tuple):
        resolved = tuple(resolve_futures_to_states(item) for item in value)
        return type(value)(*resolved) if hasattr(value, "_fields") else resolved
    if isinstance(value, set):
        return {resolve_futures_to_states(item) for item in value}
    if isinstance(value, dict):
        return {key: resolve_futures_to_states(item) for key, item in value.items()}
    return value
