"""What a task run receives: its call's arguments with futures and states replaced by values.

Resolving waits for upstream runs (in the task's own thread for submitted runs, so `.submit()`
returns at once) and records lineage: every run whose result flows in, through a future, a
state, or a value another task run returned. An upstream that did not complete stops the run
before it starts (it ends `NotReady`), unless the input is wrapped in `allow_failure`, which
passes the upstream's exception instead. `quote` and `opaque` values are passed as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledgerflow.runtime.annotations import allow_failure, hash_placeholder, opaque, quote, unmapped
from ledgerflow.runtime.futures import TaskFuture
from ledgerflow.runtime.states import State

if TYPE_CHECKING:
    from ledgerflow.runtime.context import FlowRunContext

__all__ = ["Inputs", "hash_view", "needs_waiting"]

_SCALARS = (int, float, str, bool, bytes, type(None))


def needs_waiting(values: Any) -> bool:
    """Whether resolving `values` may wait for a run (a future somewhere in it)."""
    if isinstance(values, _SCALARS):
        return False
    if isinstance(values, TaskFuture):
        return True
    if isinstance(values, (quote, opaque)):
        return False
    if isinstance(values, (unmapped, allow_failure)):
        return needs_waiting(values.value)
    if isinstance(values, (list, tuple, set)):
        return any(needs_waiting(v) for v in values)
    if isinstance(values, dict):
        return any(needs_waiting(v) for v in values.values())
    return False


def hash_view(raw: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the input hash sees them: an `opaque` argument by its type only."""
    for value in raw.values():  # a loop, not any(genexpr): this runs for every task call
        if isinstance(value, opaque):
            break
    else:
        return resolved
    return {name: hash_placeholder(raw[name]) if isinstance(raw[name], opaque) else value
            for name, value in resolved.items()}


class Inputs:
    """The resolution of one call's arguments, with its lineage and upstream failures."""

    def __init__(self, flow_run: FlowRunContext) -> None:
        self._produced_by = flow_run.produced_by
        self.upstream: list[str] = []
        self.failure: str | None = None

    def resolve(self, value: Any, allow_failed: bool = False) -> Any:
        if isinstance(value, _SCALARS):
            return value
        if isinstance(value, TaskFuture):
            value.wait()
            return self._from_state(value.state, value.task_run_id, allow_failed)
        if isinstance(value, State):
            return self._from_state(value, value.task_run_id, allow_failed)
        if isinstance(value, (quote, opaque)):
            return value.value
        if isinstance(value, unmapped):
            return self.resolve(value.value, allow_failed)
        if isinstance(value, allow_failure):
            return self.resolve(value.value, True)
        produced = self._produced_by.get(id(value))
        if produced is not None and produced[1] is value:
            self._depends_on(produced[0])
        if isinstance(value, list):
            return [self.resolve(item, allow_failed) for item in value]
        if isinstance(value, tuple):
            items = [self.resolve(item, allow_failed) for item in value]
            return tuple(items) if type(value) is tuple else value
        if isinstance(value, set):
            return {self.resolve(item, allow_failed) for item in value}
        if isinstance(value, dict):
            return {k: self.resolve(v, allow_failed) for k, v in value.items()}
        return value

    def _from_state(self, state: State, task_run_id: UUID | None, allow_failed: bool) -> Any:
        if task_run_id is not None:
            self._depends_on(task_run_id)
        if state.is_completed():
            return state.resolve()
        if allow_failed and state.is_final():
            return state.resolve(raise_on_failure=False)
        if self.failure is None:
            which = f"upstream task run {task_run_id}" if task_run_id else "an upstream state"
            self.failure = f"{which} did not reach a 'COMPLETED' state: it is {state.name}"
        return None

    def _depends_on(self, task_run_id: UUID) -> None:
        text = str(task_run_id)
        if text not in self.upstream:
            self.upstream.append(text)
