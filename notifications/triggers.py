"""Trigger evaluation: windows, thresholds, buckets and cooldowns, without I/O.

One `TriggerState` per automation. The caller feeds it, in log order, the events that matter
to the trigger with the time `now` it has reached (the newest event time it has seen, or the
clock when it is idle) and the event's bucket (`for_each`: its run, its flow, or one bucket).
Times are seconds (floats); `now` never goes back.

Reactive: an event that `matched` counts in its bucket; once at least `threshold` counted
events lie within the last `within` seconds before `now` (`within` 0: no limit), the trigger
fires and the bucket starts counting afresh. During `cooldown` seconds after a firing the
bucket neither fires nor counts.

Proactive: an event that `opens` (matches `after`) starts a window in its bucket unless one is
open: from `now` (the event's time, unless it arrived late) to `within` seconds later. Matching events count in the open
window; `threshold` of them close it quietly. When `now` passes the deadline with fewer, the
trigger fires at the deadline (unless within `cooldown` of the bucket's previous firing).

The state is JSON (`to_json` / `from_json`), so the engine can keep it with its checkpoint.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ledgerflow.notifications.model import ProactiveTrigger, ReactiveTrigger

__all__ = ["EventRef", "Fired", "TriggerState"]


class EventRef(NamedTuple):
    """Where an event is in the log, and when it occurred (seconds since the epoch)."""

    id: str
    stream: str
    stream_position: int
    occurred: float


@dataclass(frozen=True)
class Fired:
    event: EventRef
    """The triggering event: the last one counted (reactive) or the one that opened the
    window (proactive)."""
    bucket: str
    at: float
    """When it fired: `now` at the triggering event (reactive) or the window's deadline."""
    count: int
    """Matching events counted in the window."""
    posture: Literal["reactive", "proactive"]


@dataclass
class _Bucket:
    times: list[float] = field(default_factory=list)
    last_fired: float | None = None
    opened: EventRef | None = None
    deadline: float | None = None
    count: int = 0


class TriggerState:
    def __init__(self, trigger: ReactiveTrigger | ProactiveTrigger) -> None:
        self.trigger = trigger
        self.now = -math.inf
        self.buckets: dict[str, _Bucket] = {}
        self._deadlines: list[tuple[float, str]] = []

    # -- feeding ---------------------------------------------------------------------------

    def observe(self, event: EventRef, bucket: str, now: float, *, matched: bool, opens: bool = False) -> list[Fired]:
        """Handle one event at `now` (>= every earlier `now`); return what fired."""
        fired = self.advance(now)
        if isinstance(self.trigger, ReactiveTrigger):
            if matched:
                found = self._count(event, bucket)
                if found is not None:
                    fired.append(found)
            return fired
        state = self.buckets.get(bucket)
        if matched and state is not None and state.deadline is not None:
            state.count += 1
            if state.count >= self.trigger.threshold:
                state.opened, state.deadline, state.count = None, None, 0
        if opens:
            state = self.buckets.setdefault(bucket, _Bucket())
            if state.deadline is None:
                # From `now`, not from the event's own time: a late-arriving event (its time
                # behind `now`) then never opens a window that ends in the past, so every
                # future deadline lies ahead of `now` and `prune` may forget cooled buckets.
                state.opened, state.deadline, state.count = event, self.now + self.trigger.within, 0
                heapq.heappush(self._deadlines, (state.deadline, bucket))
        return fired

    def advance(self, now: float) -> list[Fired]:
        """Move the time to `now`: proactive windows whose deadline it passed close (in
        deadline order) and fire when they counted too few events."""
        if now > self.now:
            self.now = now
        fired: list[Fired] = []
        while self._deadlines and self._deadlines[0][0] < self.now:
            deadline, bucket = heapq.heappop(self._deadlines)
            state = self.buckets.get(bucket)
            if state is None or state.deadline != deadline or state.opened is None:
                continue  # closed by enough events, or replaced: a stale heap entry
            opened, count = state.opened, state.count
            state.opened, state.deadline, state.count = None, None, 0
            if self._cooling(state, deadline):
                continue
            state.last_fired = deadline
            fired.append(Fired(opened, bucket, deadline, count, "proactive"))
        return fired

    def prune(self) -> None:
        """Forget buckets that can no longer affect anything (memory only: no effect on firing)."""
        horizon = self.now - self.trigger.within
        for key in [k for k, s in self.buckets.items() if self._idle(s, horizon)]:
            del self.buckets[key]

    # -- reactive --------------------------------------------------------------------------

    def _count(self, event: EventRef, bucket: str) -> Fired | None:
        state = self.buckets.setdefault(bucket, _Bucket())
        if self._cooling(state, self.now):
            return None
        state.times.append(event.occurred)
        if self.trigger.within > 0:
            horizon = self.now - self.trigger.within
            state.times = [t for t in state.times if t >= horizon]
        if len(state.times) < self.trigger.threshold:
            return None
        count = len(state.times)
        state.times = []
        state.last_fired = self.now
        return Fired(event, bucket, self.now, count, "reactive")

    def _cooling(self, state: _Bucket, at: float) -> bool:
        return state.last_fired is not None and at < state.last_fired + self.trigger.cooldown

    def _idle(self, state: _Bucket, horizon: float) -> bool:
        if state.deadline is not None:
            return False
        if state.times and (self.trigger.within == 0 or max(state.times) >= horizon):
            return False
        # A reactive bucket cools against `now`; a proactive one against its next deadline,
        # which lies at least `within` after `now`.
        ahead = self.trigger.within if isinstance(self.trigger, ProactiveTrigger) else 0.0
        return not self._cooling(state, self.now + ahead)

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "now": None if self.now == -math.inf else self.now,
            "buckets": {
                key: {
                    "times": s.times,
                    "last_fired": s.last_fired,
                    "opened": list(s.opened) if s.opened else None,
                    "deadline": s.deadline,
                    "count": s.count,
                }
                for key, s in self.buckets.items()
            },
        }

    @classmethod
    def from_json(cls, trigger: ReactiveTrigger | ProactiveTrigger, data: dict[str, Any]) -> TriggerState:
        state = cls(trigger)
        state.now = -math.inf if data.get("now") is None else float(data["now"])
        for key, raw in data.get("buckets", {}).items():
            opened = raw.get("opened")
            bucket = _Bucket(
                times=[float(t) for t in raw.get("times", [])],
                last_fired=raw.get("last_fired"),
                opened=EventRef(str(opened[0]), str(opened[1]), int(opened[2]), float(opened[3])) if opened else None,
                deadline=raw.get("deadline"),
                count=int(raw.get("count", 0)),
            )
            state.buckets[key] = bucket
            if bucket.deadline is not None:
                state._deadlines.append((bucket.deadline, key))
        heapq.heapify(state._deadlines)
        return state
