"""State hooks: code that runs when a task or a flow completes or fails (Prefect's
`on_completion=[...]` / `on_failure=[...]`), with the run and its final state."""

from ledgerflow import flow, task


def tell_completed(task, task_run, state) -> None:  # noqa: ANN001 - Prefect's hook signature
    print(f"hook: task run {task_run.name} ended {state.name}")


def page_someone(flow, flow_run, state) -> None:  # noqa: ANN001
    print(f"hook: flow run {flow_run.name} ended {state.name}: {state.message}")


@task(on_completion=[tell_completed])
def reserve(seats: int) -> int:
    return seats


@task
def charge(seats: int) -> None:
    raise RuntimeError(f"card declined for {seats} seats")


@flow(on_failure=[page_someone])
def booking(seats: int = 2) -> None:
    charge(reserve(seats))


if __name__ == "__main__":
    state = booking(return_state=True)
    print(f"booking ended {state.name}")
