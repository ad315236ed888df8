"""Schedules: when a deployment's runs are due. Cron, interval and RRule, each with its own
parameters and an `active` flag; `slots(schedule, after, ...)` lists the due times (UTC).

Cron expressions are matched by APScheduler 3's `CronTrigger` on local wall-clock times of the
schedule's timezone (`day_or`: when both day-of-month and day-of-week are restricted a day
matching either fires, as in cron; weekday numbers are cron's, 0 and 7 = Sunday). RRules are
python-dateutil's, iterated on wall-clock times from DTSTART (default 2020-01-01 00:00 local).
Intervals are elapsed time: anchor + k * interval (default anchor 2020-01-01T00:00Z, so
`--interval 300` fires at :00, :05, ...). A DST change does not move them; use cron for
wall-clock times.

Daylight saving time (cron and RRule), shown for Europe/Paris:
- A wall-clock time that does not exist (the spring-forward gap, 02:00-02:59 on the last Sunday
  of March) fires once, at the moment the clock jumps (03:00 CEST = 01:00 UTC), as Vixie cron
  runs jobs it skipped. Several slots in the gap collapse into that one run, and a slot at
  03:00 that day is that same run.
- A wall-clock time that happens twice (the autumn repeat, 02:00-02:59 on the last Sunday of
  October) fires once, at its first occurrence (02:30 CEST = 00:30 UTC); the repeated hour has
  no runs of its own.
So a daily `30 2 * * *` runs every day exactly once, and slot times only ever increase.

Pure functions and frozen models; imports nothing of ledgerflow's outside events/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dateutil.rrule import rrule, rrulestr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_ANCHOR",
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "Schedule",
    "ScheduleError",
    "slots",
    "to_instant",
    "window",
]

DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)
"""Fixed, so that deploying the same interval schedule twice gives the same slots."""


class ScheduleError(ValueError):
    """A schedule that cannot be understood (bad cron, unknown timezone, bad RRule)."""


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone {name!r}: use an IANA name such as Europe/Paris or UTC") from None


class _Schedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Parameters of this schedule's runs, over the deployment's own."""
    slug: str | None = Field(default=None, max_length=200)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    def key(self) -> dict[str, Any]:
        """What decides the schedule's runs (not `active`, not `slug`)."""
        return self.model_dump(mode="json", exclude={"active", "slug"})

    def timing(self) -> tuple[Any, ...]:
        """What decides the schedule's due times (not its parameters): schedules with the same
        timing have the same slots."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class CronSchedule(_Schedule):
    kind: Literal["cron"] = "cron"
    cron: str = Field(max_length=200)
    day_or: bool = True

    @model_validator(mode="after")
    def _parses(self) -> CronSchedule:
        _triggers(self.cron, self.day_or)
        return self

    def describe(self) -> str:
        return f"cron {self.cron} ({self.timezone})"

    def timing(self) -> tuple[Any, ...]:
        return ("cron", self.cron, self.day_or, self.timezone)


class IntervalSchedule(_Schedule):
    kind: Literal["interval"] = "interval"
    interval: float = Field(gt=0, le=366 * 86400, description="seconds")
    anchor_date: datetime = DEFAULT_ANCHOR

    @field_validator("interval")
    @classmethod
    def _whole_milliseconds(cls, value: float) -> float:
        if value < 0.001:
            raise ValueError("an interval is at least 0.001 seconds")
        return value

    @model_validator(mode="after")
    def _aware_anchor(self) -> IntervalSchedule:
        if self.anchor_date.tzinfo is None:
            object.__setattr__(self, "anchor_date", self.anchor_date.replace(tzinfo=_zone(self.timezone)))
        try:
            object.__setattr__(self, "anchor_date", self.anchor_date.astimezone(UTC))
        except OverflowError:
            raise ValueError(f"anchor_date {self.anchor_date.isoformat()} is out of range in UTC") from None
        return self

    def describe(self) -> str:
        return f"every {self.interval:g}s from {self.anchor_date.isoformat()}"

    def timing(self) -> tuple[Any, ...]:
        return ("interval", self.interval, self.anchor_date, self.timezone)


class RRuleSchedule(_Schedule):
    kind: Literal["rrule"] = "rrule"
    rrule: str = Field(max_length=2000)

    @model_validator(mode="after")
    def _parses(self) -> RRuleSchedule:
        _rule(self.rrule)
        return self

    def describe(self) -> str:
        return f"rrule {self.rrule} ({self.timezone})"

    def timing(self) -> tuple[Any, ...]:
        return ("rrule", self.rrule, self.timezone)


Schedule = Annotated[CronSchedule | IntervalSchedule | RRuleSchedule, Field(discriminator="kind")]


# -- cron ---------------------------------------------------------------------------------

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _cron_weekdays(field: str) -> str:
    """Cron's day-of-week field (0/7 = Sunday, names) as APScheduler names (0 = Monday there)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for token in field.lower().split(","):
        part, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ScheduleError(f"bad step in day-of-week {field!r}")
        if part in ("*", "?"):
            first, last = 0, 6
        elif "-" in part:
            a, _, b = part.partition("-")
            first, last = _weekday(a), _weekday(b)
            if last == 0 and b.strip() in ("7",):
                last = 7
        else:
            first = last = _weekday(part)
            if step_text:
                last = 6
        if last < first:
            raise ScheduleError(f"day-of-week range {part!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAYS[day] for day in sorted(days))


def _weekday(text: str) -> int:
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text[:3] in _DAYS:
        return _DAYS.index(text[:3])
    raise ScheduleError(f"{text!r} is not a day of the week (0-7 or sun-sat)")


@lru_cache(maxsize=4096)
def _triggers(expression: str, day_or: bool) -> tuple[CronTrigger, ...]:
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"cron {expression!r} needs 5 fields (minute hour day-of-month month day-of-week), not {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    try:
        weekdays = _cron_weekdays(weekday)

        def trigger(day_field: str, weekday_field: str) -> CronTrigger:
            return CronTrigger(minute=minute, hour=hour, day=day_field, month=month, day_of_week=weekday_field,
                               timezone=UTC)

        if day_or and day != "*" and weekdays != "*":
            return trigger(day, "*"), trigger("*", weekdays)
        return (trigger(day, weekdays),)
    except ScheduleError:
        raise
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"cron {expression!r}: {exc}") from None


def _cron_walls(schedule: CronSchedule, start: datetime) -> Iterator[datetime]:
    """Matching wall-clock times (naive) from `start` (naive) on, in order."""
    triggers = _triggers(schedule.cron, schedule.day_or)
    cursor = start.replace(tzinfo=UTC)
    while True:
        found = [t.get_next_fire_time(None, cursor) for t in triggers]
        due = min(f for f in found if f is not None)
        yield due.replace(tzinfo=None)
        cursor = due + timedelta(seconds=1)


# -- rrule --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _rule(text: str) -> rrule:
    try:
        parsed = rrulestr(text, dtstart=DEFAULT_ANCHOR.replace(tzinfo=None), ignoretz=True)
    except (ValueError, TypeError, IndexError) as exc:
        raise ScheduleError(f"rrule {text!r}: {exc}") from None
    if not isinstance(parsed, rrule):
        raise ScheduleError(f"rrule {text!r}: give one RRULE (with an optional DTSTART), not a set")
    return parsed


def _rrule_walls(schedule: RRuleSchedule, start: datetime) -> Iterator[datetime]:
    rule = _rule(schedule.rrule)
    current = rule.after(start, inc=True)
    while current is not None:
        yield current
        current = rule.after(current, inc=False)


# -- wall-clock times to instants ---------------------------------------------------------


def to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a naive wall-clock time of `zone` fires at: its first occurrence when
    it happens twice, the moment the clock jumps when it does not exist (module docstring)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: find the jump, the first instant whose wall-clock time is past `wall`.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = first
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond == 0 else high


def _instants(schedule: CronSchedule | RRuleSchedule, after: datetime) -> Iterator[datetime]:
    zone = _zone(schedule.timezone)
    start = after.astimezone(zone).replace(tzinfo=None)
    walls = _cron_walls(schedule, start) if isinstance(schedule, CronSchedule) else _rrule_walls(schedule, start)
    last: datetime | None = None
    for wall in walls:
        instant = to_instant(wall, zone)
        if instant <= after or (last is not None and instant <= last):
            continue
        last = instant
        yield instant


def _interval_instants(schedule: IntervalSchedule, after: datetime) -> Iterator[datetime]:
    step = timedelta(microseconds=round(schedule.interval * 1_000_000))
    anchor = schedule.anchor_date
    k = (after - anchor) // step + 1
    while True:
        yield anchor + k * step
        k += 1


_SLOTS_CACHE: dict[tuple[Any, ...], tuple[datetime, ...]] = {}
_SLOTS_CACHE_LIMIT = 16_384
_slots_lock = threading.Lock()


def slots(schedule: Schedule, after: datetime, until: datetime | None = None, limit: int = 100) -> list[datetime]:
    """The schedule's due times (UTC) strictly after `after`, up to `until` (inclusive), at most
    `limit` of them.

    Remembered by timing: a thousand deployments on `0 * * * *` share one computation per tick
    (walking a cron expression costs tens of microseconds a slot)."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    after = after.astimezone(UTC)
    key = (schedule.timing(), after, until, limit)
    known = _SLOTS_CACHE.get(key)
    if known is None:
        known = tuple(_slots(schedule, after, until, limit))
        with _slots_lock:
            if len(_SLOTS_CACHE) >= _SLOTS_CACHE_LIMIT:
                _SLOTS_CACHE.clear()
            _SLOTS_CACHE[key] = known
    return list(known)


def _slots(schedule: Schedule, after: datetime, until: datetime | None, limit: int) -> list[datetime]:
    source = (
        _interval_instants(schedule, after) if isinstance(schedule, IntervalSchedule) else _instants(schedule, after)
    )
    found: list[datetime] = []
    for instant in source:
        if len(found) >= limit or (until is not None and instant > until):
            break
        found.append(instant)
    return found


def window(
    schedule: Schedule, now: datetime, horizon: timedelta, min_runs: int, max_runs: int,
    after: datetime | None = None,
) -> list[datetime]:
    """The slots to have materialised at `now`: those in (now, now + horizon], and at least
    `min_runs`, at most `max_runs` of them. With `after` (a slot already materialised), only
    the ones past it; `min_runs` still counts from `now`."""
    start = max(now, after) if after is not None else now
    wanted: list[datetime] = []
    counted = len(slots(schedule, now, start, max_runs)) if after is not None and after > now else 0
    for instant in slots(schedule, start, None, max_runs - counted):
        if instant > now + horizon and counted + len(wanted) >= min_runs:
            break
        wanted.append(instant)
    return wanted
