"""Taking slots of concurrency limits (events/concurrency_limits.py): around task runs that
carry a limited tag, and in flow code with `concurrency()` and `rate_limit()` (Prefect 3's).

`Slots` is this process's side of the limits. It keeps each limit's stream folded as far as it
has read it (a take reads only what is new), serialises this process's takes of one limit (they
never conflict with each other), wakes its own waiters when it releases, and renews the leases
it holds on a background thread every third of a lease. Other processes' releases are noticed
by polling: sooner when a lease is due to end or rate-limit slots to decay.

Takes and renewals append with the version they were decided on (ConcurrencyConflict: read
again, decide again); a release is appended with any version, since giving slots back can never
break the limit. The log is the process's own: the store, or the API server in remote mode.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

from ledgerflow.events import ANY, ConcurrencyConflict, StreamAppend
from ledgerflow.events.codec import STREAM_NAME
from ledgerflow.events.concurrency_limits import (
    LimitState,
    acquired_event,
    check_limit_name,
    fold_limit,
    limit_stream,
    released_event,
    renewed_event,
)
from ledgerflow.events.model import utcnow
from ledgerflow.events.runs import RunLog
from ledgerflow.runtime.dispatch import in_async_context
from ledgerflow.runtime.logging import get_logger

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError", "Occupation", "Slots",
           "concurrency", "rate_limit"]

_FIRST_POLL = 0.02
_MAX_POLL = 0.25
_OWNER = f"{socket.gethostname()}:{os.getpid()}"


class ConcurrencySlotAcquisitionError(Exception):
    """Slots cannot be taken: the limit does not exist (with `strict=True`), it is smaller than
    the slots asked for, or `rate_limit` was used on a limit without slot decay."""


class AcquireConcurrencySlotTimeoutError(ConcurrencySlotAcquisitionError, TimeoutError):
    """The slots were not free within `timeout_seconds`."""


class WaitAbandoned(Exception):
    """The caller stopped waiting (its flow run was cancelled)."""


@dataclass
class _View:
    state: LimitState
    changed: threading.Condition = field(default_factory=threading.Condition)


class Slots:
    def __init__(self, log: RunLog, lease_seconds: float = 30.0) -> None:
        self.log = log
        self.lease = timedelta(seconds=lease_seconds)
        self._views: dict[str, _View] = {}
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}
        """holder -> limit name, for leases this process renews."""
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()

    # -- taking and giving back ----------------------------------------------------------------

    def acquire(
        self, name: str, slots: int, owner: str, *, decaying: bool = False, timeout: float | None = None,
        strict: bool = True, stopping: Callable[[], bool] | None = None,
    ) -> str | None:
        """Take `slots` of limit `name`, waiting for them; the holder id to release them with.

        None when there is no such limit and not `strict`. `decaying`: a rate limit's take,
        never released, whose slots decay. Raises AcquireConcurrencySlotTimeoutError after
        `timeout` seconds, WaitAbandoned once `stopping()` says so."""
        check_limit_name(name)
        view = self._view(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = _FIRST_POLL
        holder = str(uuid.uuid4())
        with view.changed:
            while True:
                state = self._refresh(view)
                if not state.exists:
                    if strict:
                        raise ConcurrencySlotAcquisitionError(
                            f"concurrency limit {name!r} does not exist: create it with "
                            f"`ledgerflow concurrency-limit create {name} N`")
                    return None
                _check_fits(state, slots, decaying)
                now = utcnow()
                if state.admits(slots, now):
                    event = acquired_event(name, holder, slots, now, None if decaying else self.lease, f"{owner}@{_OWNER}")
                    try:
                        stored = self.log.append_streams([StreamAppend(limit_stream(name), [event], state.version)])
                    except ConcurrencyConflict:
                        continue  # another process took or gave back slots meanwhile: decide again
                    view.state = fold_limit(name, stored, state)
                    if not decaying:
                        self._hold(holder, name)
                    return holder
                if stopping is not None and stopping():
                    raise WaitAbandoned(name)
                delay = poll
                frees = state.frees_at(slots, now)
                if frees is not None:
                    delay = min(delay, max((frees - now).total_seconds(), 0.005))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AcquireConcurrencySlotTimeoutError(
                            f"no {slots} free slot(s) of concurrency limit {name!r} within {timeout} seconds")
                    delay = min(delay, left)
                view.changed.wait(delay * random.uniform(0.8, 1.2))
                poll = min(poll * 2, _MAX_POLL)

    def release(self, name: str, holder: str) -> None:
        with self._lock:
            self._held.pop(holder, None)
        self.log.append_streams([StreamAppend(limit_stream(name), [released_event(name, holder)], ANY)])
        view = self._view(name)
        with view.changed:
            view.changed.notify_all()

    def hold_tags(self, tags: Iterable[str], owner: str, stopping: Callable[[], bool] | None = None) -> list[tuple[str, str]]:
        """One slot of each tag's limit (tags without a limit take none), taken in name order so
        that two runs never wait for each other's slots; what to `release_all` afterwards."""
        held: list[tuple[str, str]] = []
        try:
            for tag in sorted(set(tags)):
                if not STREAM_NAME.fullmatch(limit_stream(tag)):
                    continue  # a tag no limit can be named after
                holder = self.acquire(tag, 1, owner, strict=False, stopping=stopping)
                if holder is not None:
                    held.append((tag, holder))
        except BaseException:
            self.release_all(held)
            raise
        return held

    def release_all(self, held: Sequence[tuple[str, str]]) -> None:
        for name, holder in reversed(held):
            self.release(name, holder)

    def close(self) -> None:
        self._closed.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)

    # -- what this process knows of each limit --------------------------------------------------

    def _view(self, name: str) -> _View:
        view = self._views.get(name)
        if view is None:
            with self._lock:
                view = self._views.setdefault(name, _View(LimitState(name)))
        return view

    def _refresh(self, view: _View) -> LimitState:
        state = view.state
        new = self.log.read_stream(limit_stream(state.name), state.version + 1)
        if new:
            view.state = state = fold_limit(state.name, new, state)
        return state

    # -- leases -------------------------------------------------------------------------------

    def _hold(self, holder: str, name: str) -> None:
        with self._lock:
            self._held[holder] = name
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_forever, name="ledgerflow-leases", daemon=True)
                self._renewer.start()

    def _renew_forever(self) -> None:
        while not self._closed.wait(self.lease.total_seconds() / 3):
            with self._lock:
                by_name: dict[str, list[str]] = {}
                for holder, name in self._held.items():
                    by_name.setdefault(name, []).append(holder)
            for name, holders in by_name.items():
                try:
                    self._renew(name, holders)
                except Exception:  # noqa: BLE001 - tried again at the next tick
                    get_logger().warning("could not renew the leases on concurrency limit %r", name, exc_info=True)

    def _renew(self, name: str, holders: list[str]) -> None:
        view = self._view(name)
        with view.changed:
            for _ in range(20):
                state = self._refresh(view)
                now = utcnow()
                live = state.live_holders(now)
                lost = [holder for holder in holders if holder not in live]
                if lost:
                    get_logger().warning("lost %d lease(s) on concurrency limit %r: they ended before being renewed",
                                         len(lost), name)
                    with self._lock:
                        for holder in lost:
                            self._held.pop(holder, None)
                events = [renewed_event(name, holder, now + self.lease) for holder in holders if holder in live]
                if not events:
                    return
                try:
                    stored = self.log.append_streams([StreamAppend(limit_stream(name), events, state.version)])
                except ConcurrencyConflict:
                    continue
                view.state = fold_limit(name, stored, state)
                return


def _check_fits(state: LimitState, slots: int, decaying: bool) -> None:
    if slots < 1:
        raise ValueError(f"occupy must be at least 1 (got {slots})")
    if slots > state.limit:
        raise ConcurrencySlotAcquisitionError(
            f"cannot take {slots} slot(s) of concurrency limit {state.name!r}: it has {state.limit}")
    if decaying and state.slot_decay_per_second <= 0:
        raise ConcurrencySlotAcquisitionError(
            f"rate_limit needs a limit with slot decay: create {state.name!r} with "
            f"`ledgerflow concurrency-limit create {state.name} N --slot-decay-per-second R`")


# -- the SDK -----------------------------------------------------------------------------------


def _names(names: str | Sequence[str]) -> list[str]:
    return sorted({names} if isinstance(names, str) else set(names))


def _slots() -> Slots:
    from ledgerflow.runtime import config

    return config.current().slots


class Occupation:
    """`with concurrency(...)` / `async with concurrency(...)`: slots held for the block."""

    def __init__(self, names: list[str], occupy: int, timeout_seconds: float | None, strict: bool) -> None:
        self.names, self.occupy, self.timeout, self.strict = names, occupy, timeout_seconds, strict
        self._held: list[tuple[str, str]] = []

    def _take(self) -> None:
        slots = _slots()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            for name in self.names:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                holder = slots.acquire(name, self.occupy, "concurrency", timeout=left, strict=self.strict)
                if holder is None:
                    _warn_missing(name)
                else:
                    self._held.append((name, holder))
        except BaseException:
            self._give_back()
            raise

    def _give_back(self) -> None:
        held, self._held = self._held, []
        if held:
            _slots().release_all(held)

    def __enter__(self) -> None:
        self._take()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._give_back()

    async def __aenter__(self) -> None:
        await asyncio.to_thread(self._take)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        await asyncio.to_thread(self._give_back)


def concurrency(
    names: str | Sequence[str], occupy: int = 1, timeout_seconds: float | None = None, strict: bool = False,
) -> Occupation:
    """Hold `occupy` slots of each named limit for the block (`with` or `async with`), waiting
    for them; AcquireConcurrencySlotTimeoutError after `timeout_seconds`. A name with no limit
    is not limited (a warning is logged), or raises ConcurrencySlotAcquisitionError if `strict`."""
    return Occupation(_names(names), occupy, timeout_seconds, strict)


def rate_limit(
    names: str | Sequence[str], occupy: int = 1, timeout_seconds: float | None = None, strict: bool = False,
) -> Any:
    """Wait until `occupy` slots of each named limit can be taken, and take them: they free
    themselves at the limit's `slot_decay_per_second`. In async code, returns an awaitable."""
    if in_async_context():
        return asyncio.to_thread(_rate_limit, _names(names), occupy, timeout_seconds, strict)
    _rate_limit(_names(names), occupy, timeout_seconds, strict)
    return None


def _rate_limit(names: list[str], occupy: int, timeout_seconds: float | None, strict: bool) -> None:
    slots = _slots()
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    for name in names:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if slots.acquire(name, occupy, "rate_limit", decaying=True, timeout=left, strict=strict) is None:
            _warn_missing(name)


def _warn_missing(name: str) -> None:
    get_logger().warning(
        "concurrency limit %r does not exist, so nothing is limited: create it with "
        "`ledgerflow concurrency-limit create %s N` (or pass strict=True to make this an error)", name, name)
