"""`concurrency()` and `rate_limit()` in flow code, tag limits on task runs, and what happens
with a name that has no limit (Prefect 3's behaviour: a warning, or an error with strict=True)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime

import pytest

from ledgerflow import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    concurrency,
    flow,
    rate_limit,
    task,
)
from ledgerflow.events import EventStore
from ledgerflow.events.concurrency_limits import create_limit, fold_limit, read_limit
from ledgerflow.events.model import utcnow


class Peak:
    """How many callers are inside at once, at most."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def test_concurrency_blocks_hold_at_most_the_limit(runs: EventStore) -> None:
    create_limit(runs, "gpu", 2)
    peak = Peak()

    @task
    def use_gpu(i: int) -> int:
        with concurrency("gpu", occupy=1):
            peak.enter()
            time.sleep(0.02)
            peak.leave()
        return i

    @flow
    def train() -> list[int]:
        return [f.result() for f in use_gpu.map(range(12))]

    assert train() == list(range(12))
    assert peak.most == 2
    assert read_limit(runs, "gpu").occupied(utcnow()) == 0
    assert len(runs.read_stream("concurrency-limit-gpu", types=["concurrency-limit.released"])) == 12


def test_async_concurrency_blocks_hold_at_most_the_limit(runs: EventStore) -> None:
    create_limit(runs, "api", 1)
    peak = Peak()

    @task
    async def call_api(i: int) -> int:
        async with concurrency("api"):
            peak.enter()
            await asyncio.sleep(0.02)
            peak.leave()
        return i

    @flow
    async def crawl() -> list[int]:
        return list(await asyncio.gather(*(call_api(i) for i in range(5))))

    assert asyncio.run(crawl()) == list(range(5))
    assert peak.most == 1


def test_tagged_task_runs_wait_for_a_slot_and_untagged_ones_take_none(runs: EventStore) -> None:
    create_limit(runs, "warehouse", 2)
    peak = Peak()

    @task(tags=["warehouse"])
    def load(i: int) -> int:
        peak.enter()
        time.sleep(0.02)
        peak.leave()
        return i

    @task
    def free(i: int) -> int:
        return i

    @flow
    def nightly() -> list[int]:
        return [f.result() for f in load.map(range(8))] + [f.result() for f in free.map(range(3))]

    assert nightly() == [*range(8), *range(3)]
    assert peak.most == 2
    taken = runs.read_stream("concurrency-limit-warehouse", types=["concurrency-limit.acquired"])
    assert len(taken) == 8
    assert all(str(e.data["owner"]).startswith("task run load-") for e in taken)


def test_a_missing_name_is_not_limited_but_warned_about(runs: EventStore, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ledgerflow"), concurrency("nowhere"):
        pass
    assert "concurrency limit 'nowhere' does not exist" in caplog.text
    assert "ledgerflow concurrency-limit create nowhere N" in caplog.text
    assert runs.read_stream("concurrency-limit-nowhere") == []


def test_a_missing_name_with_strict_is_an_error(runs: EventStore) -> None:
    with pytest.raises(ConcurrencySlotAcquisitionError, match="'nowhere' does not exist: create it with"):
        with concurrency("nowhere", strict=True):
            pytest.fail("the block must not run")
    with pytest.raises(ConcurrencySlotAcquisitionError, match="does not exist"):
        rate_limit("nowhere", strict=True)


def test_asking_more_than_the_limit_or_rate_limiting_without_decay_is_an_error(runs: EventStore) -> None:
    create_limit(runs, "small", 1)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="cannot take 2 slot"):
        with concurrency("small", occupy=2):
            pass
    with pytest.raises(ConcurrencySlotAcquisitionError, match="rate_limit needs a limit with slot decay"):
        rate_limit("small")
    assert runs.read_stream("concurrency-limit-small", types=["concurrency-limit.acquired"]) == []


def test_a_task_tagged_with_a_limit_of_zero_fails_saying_why(runs: EventStore) -> None:
    create_limit(runs, "frozen", 0)

    @task(tags=["frozen"])
    def never() -> int:
        return 1

    @flow
    def blocked() -> str:
        state = never(return_state=True)
        return str(state.message)

    assert "cannot take 1 slot(s) of concurrency limit 'frozen': it has 0" in blocked()


def test_a_held_slot_times_out_others_and_frees_when_the_block_ends(runs: EventStore) -> None:
    create_limit(runs, "one", 1)
    with concurrency("one"):
        waiter: list[BaseException] = []

        def wait_briefly() -> None:
            try:
                with concurrency("one", timeout_seconds=0.1):
                    pass
            except BaseException as exc:  # noqa: BLE001 - inspected below
                waiter.append(exc)

        thread = threading.Thread(target=wait_briefly)
        thread.start()
        thread.join()
        assert isinstance(waiter[0], AcquireConcurrencySlotTimeoutError)
    with concurrency("one", timeout_seconds=5):
        assert read_limit(runs, "one").occupied(utcnow()) == 1


def test_rate_limit_slots_decay_at_the_limits_rate(runs: EventStore) -> None:
    create_limit(runs, "calls", 2, slot_decay_per_second=10.0)
    for _ in range(4):
        rate_limit("calls")
    events = runs.read_stream("concurrency-limit-calls")
    taken = [i for i, e in enumerate(events) if e.type == "concurrency-limit.acquired"]
    assert len(taken) == 4 and all(events[i].data["expires"] is None for i in taken)  # never released: they decay
    for i in taken:
        before = fold_limit("calls", events[:i])
        at = datetime.fromisoformat(events[i].data["at"])
        assert before.occupied(at) + 1 <= 2 + 1e-9  # each take waited until a slot had decayed


def test_a_task_run_waiting_for_a_slot_ends_cancelled_when_its_flow_run_is(runs: EventStore) -> None:
    from ledgerflow.events.runs import cancel_flow_run
    from tests.api.conftest import wait_until
    from tests.runtime.test_cancellation import Running, flow_run_ids

    create_limit(runs, "busy", 1)
    ran: list[int] = []

    @task(tags=["busy"])
    def blocked() -> int:
        ran.append(1)
        return 1

    @flow
    def waits() -> int:
        return int(blocked())

    with concurrency("busy"):  # the only slot, held while the flow waits for it
        running = Running(lambda: waits(return_state=True))
        (run_id,) = flow_run_ids(runs)
        wait_until(lambda: bool(runs.read_stream(f"flow-run-{run_id}", types=["task-run.created"])))
        cancel_flow_run(runs, run_id, message="no more waiting")
        state = running.finished()
    assert state.is_cancelled() and ran == []
    task_states = [e.type for e in runs.read_stream(f"flow-run-{run_id}") if e.type.startswith("task-run.")]
    assert task_states == ["task-run.created", "task-run.Cancelled"]
    assert len(runs.read_stream("concurrency-limit-busy", types=["concurrency-limit.acquired"])) == 1  # only ours
