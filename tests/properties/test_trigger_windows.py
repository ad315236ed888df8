"""Trigger windows, thresholds, buckets and cooldowns against a simple model.

The model keeps every counted event and recounts from scratch; the implementation prunes,
keeps a deadline heap, forgets idle buckets and is saved and restored as JSON at random
points. Both must fire at exactly the same events and times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.notifications.model import Match, ProactiveTrigger, ReactiveTrigger
from ledgerflow.notifications.triggers import EventRef, Fired, TriggerState

MATCH = Match(events=["x.*"])


@dataclass(frozen=True)
class Step:
    kind: str  # "event", "tick", "save"
    time: float
    bucket: str = ""
    matched: bool = True
    opens: bool = False


times = st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda t: round(t, 1))
events = st.builds(Step, st.just("event"), times, st.sampled_from(["", "a", "b"]), st.booleans(), st.booleans())
ticks = st.builds(Step, st.just("tick"), times)
saves = st.builds(Step, st.just("save"), st.just(0.0))
steps = st.lists(st.one_of(events, events, events, ticks, saves), max_size=60)


def run_implementation(trigger: ReactiveTrigger | ProactiveTrigger, plan: list[Step]) -> list[tuple[int, float, int, str]]:
    state = TriggerState(trigger)
    now = -math.inf
    fired: list[Fired] = []
    for index, step in enumerate(plan):
        if step.kind == "save":
            state = TriggerState.from_json(trigger, orjson.loads(orjson.dumps(state.to_json())))
            continue
        now = max(now, step.time)
        if step.kind == "tick":
            fired += state.advance(now)
            state.prune()
            continue
        ref = EventRef(str(index), "s", index, step.time)
        fired += state.observe(ref, step.bucket, now, matched=step.matched, opens=step.opens)
    return [(int(f.event.id), f.at, f.count, f.bucket) for f in fired]


def reactive_model(trigger: ReactiveTrigger, plan: list[Step]) -> list[tuple[int, float, int, str]]:
    now = -math.inf
    counted: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    fired = []
    for index, step in enumerate(plan):
        if step.kind == "save":
            continue
        now = max(now, step.time)
        if step.kind == "tick" or not step.matched:
            continue
        if step.bucket in last and now < last[step.bucket] + trigger.cooldown:
            continue
        counted.setdefault(step.bucket, []).append(step.time)
        live = [t for t in counted[step.bucket] if trigger.within == 0 or t >= now - trigger.within]
        if len(live) >= trigger.threshold:
            fired.append((index, now, len(live), step.bucket))
            counted[step.bucket] = []
            last[step.bucket] = now
    return fired


def proactive_model(trigger: ProactiveTrigger, plan: list[Step]) -> list[tuple[int, float, int, str]]:
    now = -math.inf
    windows: dict[str, tuple[int, float, int]] = {}  # bucket -> (opened by, deadline, count)
    last: dict[str, float] = {}
    fired = []

    def expire() -> None:
        for bucket, (opener, deadline, count) in sorted(windows.items(), key=lambda item: (item[1][1], item[0])):
            if deadline < now:
                del windows[bucket]
                if bucket in last and deadline < last[bucket] + trigger.cooldown:
                    continue
                last[bucket] = deadline
                fired.append((opener, deadline, count, bucket))

    for index, step in enumerate(plan):
        if step.kind == "save":
            continue
        now = max(now, step.time)
        expire()
        if step.kind == "tick":
            continue
        if step.matched and step.bucket in windows:
            opener, deadline, count = windows[step.bucket]
            if count + 1 >= trigger.threshold:
                del windows[step.bucket]
            else:
                windows[step.bucket] = (opener, deadline, count + 1)
        if step.opens and step.bucket not in windows:
            windows[step.bucket] = (index, now + trigger.within, 0)
    return fired


@settings(max_examples=400, deadline=None)
@given(
    plan=steps,
    threshold=st.integers(1, 4),
    within=st.sampled_from([0.0, 0.5, 3.0, 10.0]),
    cooldown=st.sampled_from([0.0, 2.0, 15.0]),
)
def test_reactive_matches_the_model(plan: list[Step], threshold: int, within: float, cooldown: float) -> None:
    trigger = ReactiveTrigger(match=MATCH, threshold=threshold, within=within, cooldown=cooldown)
    assert run_implementation(trigger, plan) == reactive_model(trigger, plan)


@settings(max_examples=400, deadline=None)
@given(
    plan=steps,
    threshold=st.integers(1, 3),
    within=st.sampled_from([0.5, 3.0, 10.0]),
    cooldown=st.sampled_from([0.0, 2.0, 15.0]),
)
def test_proactive_matches_the_model(plan: list[Step], threshold: int, within: float, cooldown: float) -> None:
    trigger = ProactiveTrigger(posture="proactive", match=MATCH, after=["y"], threshold=threshold,
                               within=within, cooldown=cooldown)
    assert run_implementation(trigger, plan) == proactive_model(trigger, plan)


def test_every_event_fires_by_default() -> None:
    trigger = ReactiveTrigger(match=MATCH)
    plan = [Step("event", t) for t in (1.0, 1.0, 2.0)]
    assert [index for index, *_ in run_implementation(trigger, plan)] == [0, 1, 2]


def test_a_storm_within_the_cooldown_fires_once() -> None:
    trigger = ReactiveTrigger(match=MATCH, cooldown=600)
    plan = [Step("event", t / 10) for t in range(1000)] + [Step("event", 700.0)]
    assert [index for index, *_ in run_implementation(trigger, plan)] == [0, 1000]


def test_threshold_within_a_window() -> None:
    trigger = ReactiveTrigger(match=MATCH, threshold=3, within=10)
    plan = [Step("event", t) for t in (0.0, 5.0, 20.0, 25.0, 29.0, 30.0)]
    assert run_implementation(trigger, plan) == [(4, 29.0, 3, "")]


def test_proactive_fires_only_when_the_run_is_late() -> None:
    trigger = ProactiveTrigger(posture="proactive", match=MATCH, after=["y"], within=60, for_each="run")
    plan = [
        Step("event", 0.0, "late", matched=False, opens=True),
        Step("event", 0.0, "on-time", matched=False, opens=True),
        Step("event", 59.0, "on-time", matched=True),
        Step("tick", 60.0),
        Step("tick", 60.5),
    ]
    assert run_implementation(trigger, plan) == [(0, 60.0, 0, "late")]
