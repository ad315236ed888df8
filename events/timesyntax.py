"""The one time syntax of the CLI and the API: `30m`, `12h`, `7d`, `2w` ago, or an ISO-8601 time.

A time without an offset is UTC. Both `ledgerflow ... --since` and the API's `since` / `until`
query parameters go through `parse_time`, so whatever one accepts the other does too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["TIME_SYNTAX", "InvalidTime", "parse_time"]

TIME_SYNTAX = "a duration ago (45s, 30m, 12h, 7d, 2w) or an ISO-8601 time (2024-05-01T00:00, UTC unless it has an offset)"

_AGO = re.compile(r"^(\d{1,9})\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class InvalidTime(ValueError):
    pass


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """The timezone-aware time `text` names; `InvalidTime` says what is accepted."""
    value = text.strip()
    ago = _AGO.match(value)
    try:
        if ago:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[ago[2]]: int(ago[1])})
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except (ValueError, OverflowError):
        raise InvalidTime(f"{text!r} is not a time: use {TIME_SYNTAX}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
