"""Sync or async: Prefect's functions that work both plainly called and awaited.

`pause_flow_run()` in a sync flow blocks and returns the value; `await pause_flow_run()` in an
async flow awaits the async twin. Like Prefect, the choice follows the function the call is
made from: the current task's or flow's own kind inside a run, and whether an event loop runs
in this thread outside one.
"""

from __future__ import annotations

import asyncio

from ledgerflow.runtime.context import flow_run_var, task_run_var

__all__ = ["in_async_context"]


def in_async_context() -> bool:
    """Whether the caller is async code (so an awaitable is what it expects)."""
    task = task_run_var.get()
    if task is not None:
        return bool(task.task.is_async)
    flow = flow_run_var.get()
    if flow is not None:
        return bool(flow.flow.is_async)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
