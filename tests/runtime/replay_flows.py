"""Flows the replay tests run and replay by entrypoint. Every task execution appends its name
to `<folder>/executed`, so a test sees exactly which tasks ran (not only their states)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledgerflow import flow, task


def executed(folder: str | Path) -> list[str]:
    path = Path(folder) / "executed"
    return path.read_text().split() if path.exists() else []


def _record(folder: str, name: str) -> None:
    with open(Path(folder) / "executed", "a") as log:
        log.write(name + "\n")


@task
def step(folder: str, n: int, previous: int) -> int:
    """Fails while `<folder>/fail-<n>` exists (the test removes it to let the replay pass)."""
    _record(folder, f"step-{n}")
    if (Path(folder) / f"fail-{n}").exists():
        raise RuntimeError(f"step {n} was told to fail")
    return previous + n


@flow
def ten_steps(folder: str) -> int:
    total = 0
    for n in range(1, 11):
        total = step(folder, n, total)
    return total


@task
def load(folder: str, region: str) -> list[int]:
    _record(folder, f"load-{region}")
    return [len(region), 2 * len(region)]


@task
def summarise(folder: str, rows: list[int], mode: str) -> dict[str, Any]:
    _record(folder, f"summarise-{mode}")
    if (Path(folder) / "fail-summarise").exists():
        raise RuntimeError("summarise was told to fail")
    return {"mode": mode, "total": sum(rows)}


@task
def detail(folder: str, rows: list[int]) -> list[int]:
    _record(folder, "detail")
    return sorted(rows, reverse=True)


@flow
def branching(folder: str, regions: list[str], mode: str = "short") -> dict[str, Any]:
    """Maps over regions, then takes a branch chosen by a parameter."""
    loaded = [future.result() for future in load.map(folder, regions)]
    rows = [x for part in loaded for x in part]
    if mode == "long":
        rows = detail(folder, rows)
    summary: dict[str, Any] = summarise(folder, rows, mode)
    return summary


@flow
def inner(folder: str, n: int) -> int:
    value: int = step(folder, 100 + n, n)
    return value


@flow
def with_subflows(folder: str) -> int:
    first = inner(folder, 1)
    second = inner(folder, 2)
    value: int = step(folder, 200, first + second)
    return value


@task
def big(folder: str, n: int) -> str:
    """A result too big to keep in its event: it goes to a result file."""
    _record(folder, f"big-{n}")
    return f"{n}:" + "x" * 2000


@flow
def big_results(folder: str) -> int:
    parts = [big(folder, 1), big(folder, 2)]
    value: int = step(folder, 3, sum(len(p) for p in parts))
    return value


@task
def node(folder: str, index: int, seed: int, inputs: list[int]) -> int:
    _record(folder, f"node-{index}")
    if (Path(folder) / f"fail-node-{index}").exists():
        raise RuntimeError(f"node {index} was told to fail")
    return seed + sum(inputs)


@flow
def dag(folder: str, upstream: list[list[int]], seeds: list[int]) -> list[int]:
    """Node i adds its seed to the values of the nodes it depends on (all before it)."""
    values: list[int] = []
    for index, parents in enumerate(upstream):
        values.append(node(folder, index, seeds[index], [values[p] for p in parents]))
    return values
