"""Replay from failure: a run fails half-way; once the cause is fixed, `replay(run_id)` runs it
again, reusing the results of the tasks that had completed (state `Reused`) and running the
rest. `ledgerflow flow-run replay ID` does the same from the command line."""

import os

from ledgerflow import flow, get_run_logger, replay, task


@task
def extract(day: str) -> list[int]:
    get_run_logger().info("extracting %s (once: the replay reuses this result)", day)
    return [3, 1, 4, 1, 5]


@task
def load(rows: list[int]) -> int:
    if os.environ.get("WAREHOUSE") != "up":
        raise ConnectionError("the warehouse is down")
    return len(rows)


@flow
def nightly_load(day: str = "2024-05-01") -> int:
    return load(extract(day))


if __name__ == "__main__":
    failed = nightly_load(return_state=True)
    print(f"first run: {failed.name} ({failed.message})")
    os.environ["WAREHOUSE"] = "up"  # the cause is fixed
    replayed = replay(failed.flow_run_id)
    print(f"replay: {replayed.name}, loaded {replayed.result()} rows")
