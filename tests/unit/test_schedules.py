"""Schedules: cron, interval and RRule slot times, with the DST behaviour events/schedules.py documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from ledgerflow.events.schedules import Schedule, ScheduleError, slots, window

SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)


def make(**values: Any) -> Schedule:
    result: Schedule = SCHEDULE.validate_python(values)
    return result


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a_daily_cron_in_paris_keeps_its_wall_clock_time_across_both_dst_changes() -> None:
    daily = make(kind="cron", cron="0 6 * * *", timezone="Europe/Paris")
    spring = slots(daily, utc(2024, 3, 29), limit=4)
    assert spring == [utc(2024, 3, 29, 5), utc(2024, 3, 30, 5), utc(2024, 3, 31, 4), utc(2024, 4, 1, 4)]
    autumn = slots(daily, utc(2024, 10, 26), limit=3)
    assert autumn == [utc(2024, 10, 26, 4), utc(2024, 10, 27, 5), utc(2024, 10, 28, 5)]


def test_a_slot_in_the_spring_forward_gap_runs_once_when_the_clock_jumps() -> None:
    at_half_past_two = make(kind="cron", cron="30 2 * * *", timezone="Europe/Paris")
    # 02:30 does not exist on 2024-03-31: it runs at 03:00 CEST (01:00 UTC), once.
    assert slots(at_half_past_two, utc(2024, 3, 29), limit=4) == [
        utc(2024, 3, 29, 1, 30), utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30),
    ]
    every_half_hour = make(kind="cron", cron="*/30 1-3 * * *", timezone="Europe/Paris")
    # 01:00, 01:30 CET; 02:00 and 02:30 collapse into the jump (03:00 CEST), which is 03:00's own slot.
    assert slots(every_half_hour, utc(2024, 3, 30, 23), limit=4) == [
        utc(2024, 3, 31, 0, 0), utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 30),
    ]


def test_a_repeated_autumn_hour_fires_once_at_its_first_occurrence() -> None:
    at_half_past_two = make(kind="cron", cron="30 2 * * *", timezone="Europe/Paris")
    assert slots(at_half_past_two, utc(2024, 10, 26), limit=3) == [
        utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30),
    ]
    every_half_hour = make(kind="cron", cron="*/30 1-3 * * *", timezone="Europe/Paris")
    # 02:00 and 02:30 CEST run; the repeated 02:00-02:59 CET has no runs; then 03:00 CET.
    assert slots(every_half_hour, utc(2024, 10, 26, 22, 59), limit=6) == [
        utc(2024, 10, 26, 23, 0), utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 0, 0), utc(2024, 10, 27, 0, 30),
        utc(2024, 10, 27, 2, 0), utc(2024, 10, 27, 2, 30),
    ]


def test_slots_after_a_time_inside_the_repeated_hour_are_still_the_documented_ones() -> None:
    every_half_hour = make(kind="cron", cron="*/30 1-3 * * *", timezone="Europe/Paris")
    assert slots(every_half_hour, utc(2024, 10, 27, 1, 15), limit=1) == [utc(2024, 10, 27, 2, 0)]


def test_cron_weekdays_are_crons_and_day_or_matches_either_day_field() -> None:
    weekdays = make(kind="cron", cron="0 9 * * 1-5")
    found = slots(weekdays, utc(2024, 6, 7, 12), limit=3)  # a Friday noon
    assert [d.strftime("%a") for d in found] == ["Mon", "Tue", "Wed"]
    sunday = make(kind="cron", cron="0 9 * * 0")
    assert slots(sunday, utc(2024, 6, 7), limit=1)[0].strftime("%a") == "Sun"
    assert slots(make(kind="cron", cron="0 9 * * 7"), utc(2024, 6, 7), limit=1) == slots(sunday, utc(2024, 6, 7), limit=1)
    thirteenth_or_friday = make(kind="cron", cron="0 0 13 * 5")
    days = [d.day for d in slots(thirteenth_or_friday, utc(2024, 9, 1), limit=4)]
    assert days == [6, 13, 20, 27]  # Fridays, and the 13th (a Friday too in September 2024)
    both = make(kind="cron", cron="0 0 13 * 5", day_or=False)
    assert slots(both, utc(2024, 1, 1), limit=1) == [utc(2024, 9, 13)]


def test_an_interval_counts_elapsed_time_from_its_anchor() -> None:
    every_five_minutes = make(kind="interval", interval=300)
    assert slots(every_five_minutes, utc(2024, 3, 29, 0, 3), limit=2) == [utc(2024, 3, 29, 0, 5), utc(2024, 3, 29, 0, 10)]
    anchored = make(kind="interval", interval=86400, anchor_date="2024-03-01T06:00:00", timezone="Europe/Paris")
    # A day is 24 hours: 06:00 CET is 05:00 UTC, and after the spring change 07:00 CEST.
    assert slots(anchored, utc(2024, 3, 30), limit=3) == [utc(2024, 3, 30, 5), utc(2024, 3, 31, 5), utc(2024, 4, 1, 5)]


def test_an_rrule_in_a_timezone() -> None:
    monday_wednesday = make(kind="rrule", rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=6", timezone="Europe/Paris")
    assert slots(monday_wednesday, utc(2024, 3, 20, 12), limit=3) == [
        utc(2024, 3, 25, 5), utc(2024, 3, 27, 5), utc(2024, 4, 1, 4),
    ]
    assert slots(make(kind="rrule", rrule="DTSTART:20240101T000000\nRRULE:FREQ=DAILY;COUNT=2"), utc(2023, 1, 1)) == [
        utc(2024, 1, 1), utc(2024, 1, 2),
    ]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"kind": "cron", "cron": "0 6 * *"}, "5 fields"),
        ({"kind": "cron", "cron": "61 * * * *"}, "cron"),
        ({"kind": "cron", "cron": "0 6 * * 9"}, "day of the week"),
        ({"kind": "cron", "cron": "0 6 * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"kind": "interval", "interval": 0}, "greater than 0"),
        ({"kind": "rrule", "rrule": "FREQ=SOMETIMES"}, "rrule"),
        ({"kind": "weekly"}, "kind"),
    ],
)
def test_a_schedule_that_cannot_be_understood_is_refused_with_the_reason(values: dict[str, Any], problem: str) -> None:
    with pytest.raises((ValidationError, ScheduleError)) as caught:
        make(**values)
    assert problem in str(caught.value)


def test_the_window_is_the_horizon_but_at_least_min_and_at_most_max_runs() -> None:
    minutely = make(kind="interval", interval=60)
    now = utc(2024, 1, 1)
    assert len(window(minutely, now, timedelta(hours=1), 3, 100)) == 60
    assert len(window(minutely, now, timedelta(seconds=30), 3, 100)) == 3
    assert len(window(minutely, now, timedelta(hours=5), 3, 100)) == 100
    # Past a slot already requested, only the ones after it; min_runs still counts from now.
    later = window(minutely, now, timedelta(seconds=30), 3, 100, after=utc(2024, 1, 1, 0, 2))
    assert later == [utc(2024, 1, 1, 0, 3)]


EXPRESSIONS = ["*/7 * * * *", "30 2 * * *", "0 */5 * * 0,3", "15 1-3 * * *", "0 0 1 * *"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@given(
    st.sampled_from(EXPRESSIONS),
    st.sampled_from(ZONES),
    st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 1, 1)),
    st.integers(min_value=0, max_value=12 * 3600),
)
def test_slots_increase_and_do_not_depend_on_where_one_starts_looking(
    expression: str, zone: str, start: datetime, skip: int
) -> None:
    schedule = make(kind="cron", cron=expression, timezone=zone)
    after = start.replace(tzinfo=UTC)
    found = slots(schedule, after, limit=40)
    assert all(a < b for a, b in zip(found, found[1:], strict=False))
    assert all(slot > after for slot in found)
    later = after + timedelta(seconds=skip)
    assert slots(schedule, later, found[-1]) == [slot for slot in found if slot > later]
