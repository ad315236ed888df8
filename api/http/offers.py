"""Runs handed to a worker that has not claimed them yet.

Workers of one pool poll together; without this they would all be handed the same soonest
runs, race to claim them and lose most claims (the versioned append keeps the run to one of
them, but the others waste a round trip each). A run handed out is held for its worker for
`hold_seconds`: meanwhile it is handed to nobody else and counts against the pool's and its
queue's concurrency limits. A worker that dies without claiming it only delays the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from ledgerflow.projections.pool_queries import DueRun

__all__ = ["RunOffers"]


class RunOffers:
    def __init__(self, hold_seconds: float = 30.0) -> None:
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, float]] = {}

    def hand_out(self, pool: str, pick: Callable[[Collection[str]], list[DueRun]]) -> list[DueRun]:
        """The runs `pick(held)` chooses, given the runs of `pool` held for workers now;
        one pick per pool at a time, so that two workers are never handed the same run."""
        with self._lock:
            now = time.monotonic()
            held = {run: until for run, until in self._held.get(pool, {}).items() if until > now}
            chosen = pick(held.keys())
            held.update((run.id, now + self.hold_seconds) for run in chosen)
            self._held[pool] = held
            return chosen
