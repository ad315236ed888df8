"""Flows the concurrency-limit tests run in other processes (`python -m tests.limits.limit_flows ...`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ledgerflow import concurrency, flow, task


@task(tags=["db"])
def record(folder: str, i: int) -> int:
    """A task run of tag `db`: its start and end times go to a file of its own."""
    start = time.time()
    time.sleep(0.01)
    Path(folder, f"{os.getpid()}-{i}").write_text(f"{start} {time.time()}")
    return i


@flow
def fan_out(folder: str, n: int) -> list[int]:
    return [future.result() for future in record.map(folder, range(n))]


def hold_forever(name: str, ready: str) -> None:
    """Take a slot of the global limit `name`, say so in file `ready`, never give it back."""
    with concurrency(name, strict=True):
        Path(ready).write_text("held")
        while True:
            time.sleep(1)


if __name__ == "__main__":
    if sys.argv[1] == "fan-out":
        fan_out(sys.argv[2], int(sys.argv[3]))
    else:
        hold_forever(sys.argv[2], sys.argv[3])
