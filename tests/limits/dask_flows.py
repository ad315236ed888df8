"""Flows the DaskTaskRunner tests run: tasks at the top level of a module the workers import."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledgerflow import flow, get_run_logger, task
from ledgerflow.runtime.dask import DaskTaskRunner

LOCAL_CLUSTER = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True, "threads_per_worker": 1})


@task
def square(x: int) -> int:
    time.sleep(0.3)  # long enough that both workers get some
    get_run_logger().info("squared %d in process %d", x, os.getpid())
    print(f"printed by {x}")
    return x * x


@task(retries=2)
def flaky(folder: str) -> str:
    """Fails on its first attempt (the attempts are counted in files: they run elsewhere)."""
    attempts = len(list(Path(folder).glob("attempt-*")))
    Path(folder, f"attempt-{attempts + 1}").write_text(str(os.getpid()))
    if attempts == 0:
        raise ValueError("first attempt fails")
    return "recovered"


@flow(task_runner=LOCAL_CLUSTER, log_prints=True)
def fan_out(folder: str, n: int, fail: bool = False) -> int:
    total = int(sum(future.result() for future in square.map(range(n))))
    again = square.submit(2).result()  # the same call again in this run: Cached
    recovered = flaky.submit(folder).result()
    if fail:
        raise RuntimeError(f"failing after {total}, {again}, {recovered}")
    return total
