"""A flow whose task's result another process finds (`main()` with the arguments
`run FOLDER N [fail]` runs it, failing after the task with `fail`; `replay RUN_ID` replays a run).
Called by its module name rather than as `__main__`, so replays load the same task keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ledgerflow import INPUTS, TASK_SOURCE, flow, replay, task


@task(cache_policy=INPUTS + TASK_SOURCE)
def heavy(folder: str, n: int) -> list[int]:
    """Leaves a file per real run; its result is too big to travel inside the event."""
    Path(folder, f"ran-{os.getpid()}").write_text("ran")
    return list(range(n))


@flow
def shared(folder: str, n: int, fail: bool = False) -> int:
    total = int(sum(heavy(folder, n)))
    if fail:
        raise RuntimeError("failing after the task")
    return total


def main() -> None:
    if sys.argv[1] == "run":
        state = shared(sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4, return_state=True)
        print(state.name, state.flow_run_id)
    else:
        print(replay(sys.argv[2]))
