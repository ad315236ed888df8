"""Testing flows: `harness()` points the runs of a block at a throwaway store, so a test can run
a flow and look at the events it wrote (or, in pytest, use the `ledgerflow_harness` fixture)."""

from ledgerflow import flow, task
from ledgerflow.runtime.testing import harness


@task(retries=1, retry_delay_seconds=0)
def parse(line: str) -> int:
    return int(line)


@flow
def total(lines: list[str]) -> int:
    return sum(parse(line) for line in lines)


def test_total() -> None:
    with harness() as store:
        assert total(["1", "2", "39"]) == 42
        failed = total(["1", "x"], return_state=True)
        assert failed.is_failed()
        types = [event.type for event in store.read_all()]
        assert types.count("flow-run.Completed") == 1 and types.count("flow-run.Failed") == 1
        assert types.count("task-run.AwaitingRetry") == 1  # "x" was retried once, then failed


if __name__ == "__main__":
    test_total()
    print("test_total passed")
