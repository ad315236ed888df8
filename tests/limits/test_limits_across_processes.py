"""Concurrency limits across processes, on SQLite and PostgreSQL: tag limits hold over four
processes, and a slot held by a process killed with SIGKILL comes back after its lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledgerflow.events import open_store
from ledgerflow.events.concurrency_limits import create_limit, read_limit
from ledgerflow.events.model import utcnow
from ledgerflow.runtime.concurrency import AcquireConcurrencySlotTimeoutError, Slots

REPO = Path(__file__).resolve().parents[2]


def _env(home: Path, store_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env.update(LEDGERFLOW_HOME=str(home), LEDGERFLOW_DATABASE_URL=store_url, PYTHONPATH=str(REPO), **extra)
    return env


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one that ends as another starts does not overlap)."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in moments:
        open_now += change
        peak = max(peak, open_now)
    return peak


def test_max_overlap_counts_what_runs_at_once() -> None:
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
    assert max_overlap([(0, 5), (1, 2), (1.5, 3)]) == 3


def test_four_processes_of_fifty_tagged_tasks_never_exceed_a_limit_of_three(tmp_path: Path, store_url: str) -> None:
    with open_store(store_url) as store:
        create_limit(store, "db", 3)
    folder = tmp_path / "times"
    folder.mkdir()
    processes = [
        subprocess.Popen([sys.executable, "-m", "tests.limits.limit_flows", "fan-out", str(folder), "50"],
                         cwd=REPO, env=_env(tmp_path / f"home{i}", store_url))
        for i in range(4)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0, 0]
    intervals = []
    for path in folder.iterdir():
        start, end = map(float, path.read_text().split())
        intervals.append((start, end))
    assert len(intervals) == 200
    assert max_overlap(intervals) <= 3
    with open_store(store_url) as store:
        state = read_limit(store, "db")
        taken = store.read_stream("concurrency-limit-db", types=["concurrency-limit.acquired"])
    assert len(taken) == 200
    assert state.occupied(utcnow()) == 0  # every slot was given back


def test_a_slot_held_by_a_killed_process_comes_back_after_its_lease(tmp_path: Path, store_url: str) -> None:
    with open_store(store_url) as store:
        create_limit(store, "single", 1)
        ready = tmp_path / "ready"
        holder = subprocess.Popen(
            [sys.executable, "-m", "tests.limits.limit_flows", "hold", "single", str(ready)],
            cwd=REPO, env=_env(tmp_path / "home", store_url, LEDGERFLOW_CONCURRENCY_LEASE_SECONDS="1"),
        )
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                assert holder.poll() is None, "the holder exited"
                assert time.monotonic() < deadline, "the holder never took its slot"
                time.sleep(0.05)
            slots = Slots(store, lease_seconds=5)
            # Longer than the holder's lease: it renews it, so the slot stays taken.
            time.sleep(1.5)
            with pytest.raises(AcquireConcurrencySlotTimeoutError):
                slots.acquire("single", 1, "test", timeout=0.2)
            renewals = store.read_stream("concurrency-limit-single", types=["concurrency-limit.renewed"])
            assert renewals, "the live holder renewed its lease"
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        taken = slots.acquire("single", 1, "test", timeout=30)
        assert taken is not None
        state = read_limit(store, "single")
        assert list(state.live_holders(utcnow())) == [taken]
        slots.release("single", taken)
        slots.close()
