"""Concurrency limits: named pools of slots, kept as events in the stream `concurrency-limit-<name>`.

A name is a task tag (task runs carrying the tag take a slot while they run) or a global limit
that flow code takes with `concurrency("name")` / `rate_limit("name")`: one kind of limit.

    concurrency-limit.created    {name, limit, slot_decay_per_second}   (again: the limit changes)
    concurrency-limit.deleted    {name}
    concurrency-limit.acquired   {name, holder, slots, at, expires, owner}   expires null: a rate
                                 limit's take, whose slots decay at slot_decay_per_second
    concurrency-limit.renewed    {name, holder, expires}
    concurrency-limit.released   {name, holder}

Slots are taken by appending `acquired` with the stream version the decision was made on, so of
two takers racing for the last slot one gets ConcurrencyConflict, reads what the other wrote
and decides again: the limit holds across processes and machines with no lock but the log's.
A holder's slots count until it releases them or its lease (`expires`) passes: a holder renews
its lease while it works, so a crashed holder's slots come back after one lease. Leases are
compared with the reader's clock; machines are assumed to agree on the time within a second.

The stream `concurrency-limits` lists the names (`concurrency-limit.listed` / `.unlisted`), so
`ls` reads one small stream rather than scanning the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ledgerflow.events.codec import STREAM_NAME
from ledgerflow.events.errors import ConcurrencyConflict, InvalidEvent
from ledgerflow.events.model import ANY, NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend, utcnow
from ledgerflow.events.runs import RunLog

__all__ = [
    "REGISTRY_STREAM",
    "Holding",
    "LimitNotFound",
    "LimitState",
    "acquired_event",
    "check_limit_name",
    "create_limit",
    "delete_limit",
    "evolve",
    "fold_limit",
    "holders_text",
    "limit_stream",
    "list_limits",
    "read_limit",
    "released_event",
    "renewed_event",
]

REGISTRY_STREAM = "concurrency-limits"
_PREFIX = "concurrency-limit-"
_ATTEMPTS = 20


class LimitNotFound(InvalidEvent, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no concurrency limit {name!r}: create it with `ledgerflow concurrency-limit create {name} N`")
        self.name = name


def check_limit_name(name: str) -> str:
    """`name` if it can name a limit (it becomes part of a stream name), else InvalidEvent."""
    if not isinstance(name, str) or not STREAM_NAME.fullmatch(_PREFIX + name):
        raise InvalidEvent(
            f"concurrency limit name {name!r} must be 1-180 characters: letters, digits and . _ : @ / + -, "
            "starting with a letter or digit"
        )
    return name


def limit_stream(name: str) -> str:
    return _PREFIX + name


@dataclass(frozen=True)
class Holding:
    slots: int
    expires: datetime
    owner: str


@dataclass(frozen=True)
class LimitState:
    """A limit as its stream leaves it (`version`: the stream position folded up to)."""

    name: str
    exists: bool = False
    limit: int = 0
    slot_decay_per_second: float = 0.0
    version: int = 0
    holders: dict[str, Holding] = field(default_factory=dict)
    decaying: float = 0.0
    """Slots taken by rate limits, as they stood at `decaying_at`; they decay from there."""
    decaying_at: datetime | None = None

    def decayed(self, now: datetime) -> float:
        if self.decaying_at is None:
            return 0.0
        return max(0.0, self.decaying - self.slot_decay_per_second * (now - self.decaying_at).total_seconds())

    def live_holders(self, now: datetime) -> dict[str, Holding]:
        return {holder: held for holder, held in self.holders.items() if held.expires > now}

    def occupied(self, now: datetime) -> float:
        """Slots in use at `now`: live leases, plus rate-limit takes not yet decayed."""
        return sum(held.slots for held in self.live_holders(now).values()) + self.decayed(now)

    def admits(self, slots: int, now: datetime) -> bool:
        return self.exists and self.occupied(now) + slots <= self.limit + 1e-9

    def frees_at(self, slots: int, now: datetime) -> datetime | None:
        """When enough slots could be free without anyone releasing (a lease ends, slots decay)."""
        moments = [held.expires for held in self.live_holders(now).values()]
        if self.slot_decay_per_second > 0 and self.decayed(now) > 0:
            excess = self.occupied(now) + slots - self.limit
            moments.append(now + timedelta(seconds=max(excess, 0.0) / self.slot_decay_per_second))
        return min(moments, default=None)


def evolve(state: LimitState, event: StoredEvent) -> LimitState:
    """The limit after `event` (a pure fold step)."""
    data, kind = event.data, event.type
    version = event.stream_position
    if kind == "concurrency-limit.created":
        return replace(state, exists=True, limit=int(data["limit"]),
                       slot_decay_per_second=float(data.get("slot_decay_per_second") or 0.0), version=version)
    if kind == "concurrency-limit.deleted":
        return LimitState(state.name, version=version)
    if kind == "concurrency-limit.acquired":
        at = datetime.fromisoformat(data["at"])
        if data.get("expires") is None:
            return replace(state, decaying=state.decayed(at) + int(data["slots"]), decaying_at=at, version=version)
        # Holders whose lease had ended when this take was decided are gone for good.
        holders = {h: held for h, held in state.holders.items() if held.expires > at}
        holders[str(data["holder"])] = Holding(int(data["slots"]), datetime.fromisoformat(data["expires"]), str(data.get("owner", "")))
        return replace(state, holders=holders, version=version)
    if kind == "concurrency-limit.renewed":
        held = state.holders.get(str(data["holder"]))
        if held is None:
            return replace(state, version=version)
        return replace(state, holders={**state.holders, str(data["holder"]): replace(held, expires=datetime.fromisoformat(data["expires"]))},
                       version=version)
    if kind == "concurrency-limit.released":
        return replace(state, holders={h: held for h, held in state.holders.items() if h != str(data["holder"])}, version=version)
    return replace(state, version=version)


def fold_limit(name: str, events: Iterable[StoredEvent], state: LimitState | None = None) -> LimitState:
    current = state or LimitState(name)
    for event in events:
        current = evolve(current, event)
    return current


# -- events a holder writes -------------------------------------------------------------------


def acquired_event(name: str, holder: str, slots: int, now: datetime, lease: timedelta | None, owner: str) -> NewEvent:
    """A take of `slots`: held until released or `lease` passes (None: a rate limit's, decaying)."""
    return NewEvent(type="concurrency-limit.acquired", data={
        "name": name, "holder": holder, "slots": slots, "at": now.isoformat(),
        "expires": (now + lease).isoformat() if lease is not None else None, "owner": owner,
    }, meta=EventMeta(actor="concurrency"))


def renewed_event(name: str, holder: str, expires: datetime) -> NewEvent:
    return NewEvent(type="concurrency-limit.renewed", data={"name": name, "holder": holder, "expires": expires.isoformat()},
                    meta=EventMeta(actor="concurrency"))


def released_event(name: str, holder: str) -> NewEvent:
    return NewEvent(type="concurrency-limit.released", data={"name": name, "holder": holder}, meta=EventMeta(actor="concurrency"))


# -- managing limits --------------------------------------------------------------------------


def read_limit(log: RunLog, name: str) -> LimitState:
    check_limit_name(name)
    return fold_limit(name, log.read_stream(limit_stream(name)))


def create_limit(log: RunLog, name: str, limit: int, slot_decay_per_second: float = 0.0, actor: str = "cli") -> LimitState:
    """Create the limit, or change its size (and decay) if it exists; its holders keep their slots."""
    check_limit_name(name)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidEvent(f"a concurrency limit must be a whole number of slots, 0 or more (got {limit!r})")
    if not slot_decay_per_second >= 0:
        raise InvalidEvent(f"slot_decay_per_second must be 0 or more (got {slot_decay_per_second!r})")
    data = {"name": name, "limit": limit, "slot_decay_per_second": float(slot_decay_per_second)}
    meta = EventMeta(actor=actor)
    for _ in range(_ATTEMPTS):
        state = read_limit(log, name)
        expected = state.version or NO_STREAM
        appends = [StreamAppend(limit_stream(name), [NewEvent(type="concurrency-limit.created", data=data, meta=meta)], expected)]
        if not state.exists:
            appends.append(StreamAppend(REGISTRY_STREAM, [_registry("listed", name, meta)], ANY))
        try:
            stored = log.append_streams(appends)
        except ConcurrencyConflict:
            continue
        return fold_limit(name, [e for e in stored if e.stream == limit_stream(name)], state)
    raise InvalidEvent(f"concurrency limit {name!r} kept changing under {_ATTEMPTS} attempts to create it")


def delete_limit(log: RunLog, name: str, actor: str = "cli") -> None:
    """Delete the limit (LimitNotFound if there is none); its holders' slots are forgotten."""
    meta = EventMeta(actor=actor)
    for _ in range(_ATTEMPTS):
        state = read_limit(log, name)
        if not state.exists:
            raise LimitNotFound(name)
        try:
            log.append_streams([
                StreamAppend(limit_stream(name), [NewEvent(type="concurrency-limit.deleted", data={"name": name}, meta=meta)],
                             state.version),
                StreamAppend(REGISTRY_STREAM, [_registry("unlisted", name, meta)], ANY),
            ])
        except ConcurrencyConflict:
            continue
        return
    raise InvalidEvent(f"concurrency limit {name!r} kept changing under {_ATTEMPTS} attempts to delete it")


def list_limits(log: RunLog) -> list[LimitState]:
    """Every limit that exists, by name."""
    names: set[str] = set()
    for event in log.read_stream(REGISTRY_STREAM):
        name = str(event.data["name"])
        if event.type == "concurrency-limit.listed":
            names.add(name)
        else:
            names.discard(name)
    found = [read_limit(log, name) for name in sorted(names)]
    return [state for state in found if state.exists]


def _registry(kind: str, name: str, meta: EventMeta) -> NewEvent:
    return NewEvent(type=f"concurrency-limit.{kind}", data={"name": name}, meta=meta)


def holders_text(state: LimitState, now: datetime | None = None) -> Sequence[str]:
    """Who holds slots now, for people: `owner (n slots)`."""
    live = state.live_holders(now or utcnow())
    return [f"{held.owner or holder}" + (f" ({held.slots} slots)" if held.slots != 1 else "") for holder, held in live.items()]
