"""Flows the runtime tests load by entrypoint (`tests.runtime.sample_flows:<name>`), as another
process would. Side effects go to files under the folder a test passes in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ledgerflow import ThreadPoolTaskRunner, flow, task


@task
def mark(folder: str, name: str, seconds: float = 0.0) -> str:
    """Sleep, then leave a marker file: the proof that this task ran to its end."""
    time.sleep(seconds)
    (Path(folder) / name).write_text("done")
    return name


@task
def started(folder: str, name: str) -> None:
    (Path(folder) / f"started-{name}").write_text("")


def _hook(folder: str) -> Any:
    def on_cancellation(flow_: Any, run: Any, state: Any) -> None:
        (Path(folder) / "on_cancellation").write_text(state.name)

    return on_cancellation


@flow
def sequential(folder: str, steps: int = 50, seconds: float = 0.2) -> list[str]:
    """`steps` marker tasks one after the other."""
    return [mark(folder, f"step-{n}", seconds) for n in range(steps)]


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def fan_out(folder: str, count: int = 20, seconds: float = 0.5) -> list[str]:
    """`count` submitted marker tasks, two at a time."""
    futures = [mark.submit(folder, f"item-{n}", seconds) for n in range(count)]
    return [future.result() for future in futures]


@task
async def nap(folder: str, name: str, seconds: float) -> str:
    (Path(folder) / f"started-{name}").write_text("")
    await asyncio.sleep(seconds)
    (Path(folder) / name).write_text("done")
    return name


@flow
async def async_naps(folder: str, seconds: float = 30.0, count: int = 2) -> list[str]:
    names = "abcdefghijklmnopqrstuvwxyz"[:count]
    return list(await asyncio.gather(*(nap(folder, name, seconds) for name in names)))


@flow
def add(a: int, b: int = 1) -> int:
    return a + b


def with_cancellation_hook(flow_: Any, folder: str) -> Any:
    return flow_.with_options(on_cancellation=[_hook(folder)])
