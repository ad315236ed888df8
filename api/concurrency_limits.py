"""The wire shapes of concurrency limits, shared by the HTTP API and the CLI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events.concurrency_limits import LimitState, holders_text
from ledgerflow.events.model import utcnow

__all__ = ["ConcurrencyLimitIn", "ConcurrencyLimitOut", "limit_out"]


class ConcurrencyLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=180, description="A task tag, or a global limit's name")
    limit: int = Field(ge=0, le=1_000_000, description="How many slots may be held at once")
    slot_decay_per_second: float = Field(default=0.0, ge=0, le=1_000_000,
                                         description="For rate_limit(): slots freed per second")


class ConcurrencyLimitOut(BaseModel):
    name: str
    limit: int
    slot_decay_per_second: float
    active_slots: float
    """Slots in use now: live leases plus rate-limit slots not yet decayed."""
    holders: list[str]


def limit_out(state: LimitState) -> ConcurrencyLimitOut:
    now = utcnow()
    return ConcurrencyLimitOut(name=state.name, limit=state.limit, slot_decay_per_second=state.slot_decay_per_second,
                               active_slots=round(state.occupied(now), 3), holders=list(holders_text(state, now)))
