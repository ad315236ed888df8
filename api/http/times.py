"""`since` / `until` query parameters in the CLI's time syntax (events/timesyntax.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from ledgerflow.events.timesyntax import TIME_SYNTAX, parse_time

__all__ = ["Time"]


def _parse(value: Any) -> Any:
    return parse_time(value) if isinstance(value, str) else value


Time = Annotated[
    datetime,
    BeforeValidator(_parse),
    WithJsonSchema({"type": "string", "description": f"{TIME_SYNTAX[0].upper()}{TIME_SYNTAX[1:]}"}),
]
"""A time as `ledgerflow ... --since` takes it: `7d`, `12h`, `30m` ago or ISO-8601."""
