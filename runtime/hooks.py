"""State-change hooks of flows and tasks (Prefect's `on_completion=[...]`, ...).

A hook is called with (flow or task, the run, its state). It may be async: it is awaited then,
even from sync code. A hook that raises is logged; the run's outcome stands. Hooks are checked
where they are declared, so a wrong one fails at decoration, not at the end of a long run.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["HOOK_KINDS", "Hooks", "checked_hooks", "run_hooks"]

HOOK_KINDS = ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")

Hook = Callable[..., Any]


def checked_hooks(kind: str, hooks: Iterable[Hook] | None) -> list[Hook]:
    """`hooks` as a list, or TypeError naming what is wrong (as Prefect says it)."""
    if hooks is None:
        return []
    if callable(hooks) or not isinstance(hooks, Iterable):
        raise TypeError(
            f"Expected iterable for {kind!r}; got {type(hooks).__name__} instead. "
            f"Please provide a list of hooks to {kind!r}: {kind}=[hook]"
        )
    found = list(hooks)
    for hook in found:
        if not callable(hook):
            raise TypeError(f"Expected callables in {kind!r}; got {type(hook).__name__} instead.")
    return found


class Hooks:
    """The hooks of one flow or task, by kind."""

    def __init__(self, **by_kind: Iterable[Hook] | None) -> None:
        unknown = set(by_kind) - set(HOOK_KINDS)
        if unknown:
            raise TypeError(f"unknown hook kinds: {', '.join(sorted(unknown))}")
        self.by_kind = {kind: checked_hooks(kind, by_kind.get(kind)) for kind in HOOK_KINDS}

    def add(self, kind: str, hook: Hook) -> Hook:
        self.by_kind[kind].extend(checked_hooks(kind, [hook]))
        return hook

    def __getitem__(self, kind: str) -> list[Hook]:
        return self.by_kind[kind]


def run_hooks(hooks: list[Hook], owner: Any, run: Any, state: Any, on_error: Callable[[Hook], None]) -> None:
    """Call each hook; await async ones; report a hook that raises to `on_error` and go on."""
    for hook in hooks:
        try:
            outcome = hook(owner, run, state)
            if inspect.isawaitable(outcome):
                _wait_for(outcome)
        except Exception:  # noqa: BLE001 - a failing hook is logged, the run's outcome stands
            on_error(hook)


def _wait_for(awaitable: Any) -> None:
    async def finish() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(finish())
        return
    # Called from async code through the sync engine: the loop is busy running us, so the hook
    # runs to its end on a loop of its own.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(finish())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="ledgerflow-hook")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
