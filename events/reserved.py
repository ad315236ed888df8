"""Reserved streams: what a writer from outside may append to the product's streams.

The store accepts any JSON object anywhere; that is the product's own low-level write path.
Everything that comes in from outside (`ledgerflow events append`, `POST /api/events`, which
a remote runtime also writes through) goes through `check_appends` first, which refuses the
whole batch, with nothing written, when:

- an event of a type whose payload events/payloads.py defines does not fit it;
- a run event (`flow-run.*`, `task-run.*`) is not in its own run's stream
  (`flow-run-<data.flow_run_id>`), where every reader looks for it;
- a product stream (`flow-run-*`, `task-run-*`, `deployment-*`, `automation-*`, ...) is
  sent an event of a type the product does not write, or another product type lands outside
  the product's streams;
- a state change of a flow run or task run is one `events.transitions.decide` refuses on the
  run's state as its stream has it (a second `flow-run.created` too). A move that is only early
  (`Delayed`) is allowed: the runtime writes those after waiting out its own clock.

Events whose id the stream already holds are retries of a write that landed: they are not
judged again (the store returns them as stored). Run streams are appended at the version
their state was judged on, so a concurrent writer cannot slip a state in between.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from pydantic import BaseModel, ValidationError

from ledgerflow.events.errors import InvalidEvent
from ledgerflow.events.model import ANY, NewEvent, StoredEvent, StreamAppend, utcnow
from ledgerflow.events.payloads import (
    ArtifactCreated,
    ArtifactUpdated,
    FlowRunCreated,
    LogEmitted,
    StateChanged,
    TaskRunCreated,
    creates_task_run,
    flow_run_stream,
)
from ledgerflow.events.states import state_from_event_type
from ledgerflow.events.transitions import Rejected, RunState, decide, evolve

__all__ = [
    "PRODUCT_STREAM_PREFIXES",
    "PRODUCT_TYPE_PREFIXES",
    "ReservedStreamViolation",
    "RunStreamCache",
    "check_appends",
]

RUN_STREAM_PREFIXES = ("flow-run-", "task-run-")
PRODUCT_STREAM_PREFIXES = (
    *RUN_STREAM_PREFIXES, "deployment-", "automation-", "work-pool-", "worker-", "concurrency-",
    "variable-", "transaction-", "schedule-",
)
"""Streams the product writes: resources and runs."""
PRODUCT_TYPE_PREFIXES = (
    "flow-run.", "task-run.", "log.", "artifact.", "transaction.", "deployment.", "automation.", "action.",
    "worker.", "work-pool.", "concurrency.", "concurrency-limit.", "variable.", "schedule.", "ledgerflow.",
)
"""Event types the product writes (user events, e.g. from `emit_event`, may not take them)."""
_RUN_TYPES = ("flow-run.", "task-run.")
_CREATED = ("flow-run.created", "task-run.created")
_MODELS: dict[str, type[BaseModel]] = {
    "flow-run.created": FlowRunCreated,
    "task-run.created": TaskRunCreated,
    "log.emitted": LogEmitted,
    "artifact.created": ArtifactCreated,
    "artifact.updated": ArtifactUpdated,
}


class ReservedStreamViolation(InvalidEvent):
    """An event the product's streams do not accept from outside; nothing was written."""


class StreamReader(Protocol):
    def read_stream(
        self, stream: str, from_version: int = 1, limit: int | None = None, types: Sequence[str] | None = None
    ) -> list[StoredEvent]: ...


def check_appends(
    log: StreamReader,
    appends: Sequence[StreamAppend],
    now: datetime | None = None,
    cache: RunStreamCache | None = None,
) -> list[StreamAppend]:
    """`appends` with run streams pinned to the version they were judged on; raise
    ReservedStreamViolation (naming the event by its index in the batch) for what they may not
    hold. A writer that appends what it judged should `cache.forget` a stream whose append fails."""
    checked = []
    index = 0
    for append in appends:
        for offset, event in enumerate(append.events):
            _check_event(append.stream, event, index + offset)
        if append.stream.startswith("flow-run-") and any(e.type.startswith(_RUN_TYPES) for e in append.events):
            append = _judge_run_stream(log, append, index, now or utcnow(), cache)
        checked.append(append)
        index += len(append.events)
    return checked


def _refuse(index: int, event: NewEvent, reason: str) -> ReservedStreamViolation:
    return ReservedStreamViolation(f"event {index} ({event.type}): {reason}")


def _check_event(stream: str, event: NewEvent, index: int) -> None:
    product_stream = stream.startswith(PRODUCT_STREAM_PREFIXES)
    product_type = event.type.startswith(PRODUCT_TYPE_PREFIXES)
    if product_stream and not product_type:
        raise _refuse(index, event, f"stream {stream!r} is reserved for the product's own events")
    if product_type and not product_stream:
        raise _refuse(index, event, f"{event.type.split('.')[0]}.* events belong in the product's streams, not {stream!r}")
    _check_payload(event, index)
    if event.type.startswith(_RUN_TYPES) and (event.type in _CREATED or state_from_event_type(event.type)):
        own = flow_run_stream(event.data.get("flow_run_id"))
        if stream != own:
            raise _refuse(index, event, f"a run's events go in its own stream {own!r}, not {stream!r}")


def _check_payload(event: NewEvent, index: int) -> None:
    state = state_from_event_type(event.type)
    model = _MODELS.get(event.type) or (StateChanged if state else None)
    if model is None:
        return
    try:
        parsed = model.model_validate(event.data)
    except ValidationError as exc:
        raise _refuse(index, event, _first_error(exc)) from None
    if state and event.type.startswith("task-run.") and not getattr(parsed, "task_run_id", None):
        raise _refuse(index, event, "task_run_id: Field required")
    if isinstance(parsed, StateChanged) and state and (parsed.state_name, parsed.state_type) != (state[1], state[2]):
        raise _refuse(index, event, f"state_name and state_type must say {state[1]} / {state[2]}")
    if event.type != "task-run.created" and creates_task_run(event.type, event.data):
        try:
            TaskRunCreated.model_validate(event.data)
        except ValidationError as exc:
            raise _refuse(index, event, _first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(map(str, error["loc"]))
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class _RunStream(NamedTuple):
    """What judging a run stream needs of its history, as of `version`."""

    version: int
    flow: RunState | None
    created: bool
    tasks: Mapping[str, RunState | None]
    ids: frozenset[UUID]
    """Ids of the events read (all of them when read from the start; else the newest)."""

    def then(self, events: Sequence[StoredEvent], version: int) -> _RunStream:
        flow, created, tasks = self.flow, self.created, dict(self.tasks)
        for event in events:
            if event.type == "flow-run.created":
                created = True
            if event.type.startswith("flow-run."):
                flow = evolve(flow, event)
            elif event.type.startswith("task-run."):
                key = str(event.data.get("task_run_id"))
                tasks[key] = evolve(tasks.get(key), event)
        return _RunStream(version, flow, created, tasks, frozenset(e.id for e in events))


_EMPTY = _RunStream(0, None, False, {}, frozenset())


class RunStreamCache:
    """Run streams as last judged, so that a server judging a run's appends batch after batch
    reads only what was appended since (one per stream, the newest `size`)."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._streams: OrderedDict[str, _RunStream] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream: str) -> _RunStream | None:
        with self._lock:
            return self._streams.get(stream)

    def put(self, stream: str, state: _RunStream) -> None:
        with self._lock:
            known = self._streams.get(stream)
            if known is None or known.version < state.version:
                self._streams[stream] = state
                self._streams.move_to_end(stream)
                while len(self._streams) > self._size:
                    self._streams.popitem(last=False)

    def forget(self, stream: str) -> None:
        with self._lock:
            self._streams.pop(stream, None)


def _read(log: StreamReader, stream: str, cache: RunStreamCache | None) -> tuple[_RunStream, bool]:
    """The stream's state now, and whether it was read from the start."""
    known = cache.get(stream) if cache is not None else None
    start = known or _EMPTY
    news = log.read_stream(stream, start.version + 1)
    version = news[-1].stream_position if news else start.version
    state = start.then(news, version)
    if cache is not None:
        cache.put(stream, state)
    return state, known is None


def _judge_run_stream(
    log: StreamReader, append: StreamAppend, first_index: int, now: datetime, cache: RunStreamCache | None
) -> StreamAppend:
    state, complete = _read(log, append.stream, cache)
    try:
        _judge(state, append.events, first_index, now)
    except ReservedStreamViolation:
        if complete or cache is None:
            raise
        # A retry of events already stored is not judged again: look at the whole stream.
        cache.forget(append.stream)
        state, _ = _read(log, append.stream, None)
        _judge(state, append.events, first_index, now)
    if append.expected_version != ANY:
        return append
    return StreamAppend(append.stream, append.events, state.version)


def _judge(state: _RunStream, events: Sequence[NewEvent], first_index: int, now: datetime) -> None:
    flow, created, tasks = state.flow, state.created, dict(state.tasks)
    for offset, event in enumerate(events):
        if event.id in state.ids or not event.type.startswith(_RUN_TYPES):
            continue
        index = first_index + offset
        if event.type == "flow-run.created":
            if created:
                raise _refuse(index, event, f"flow run {event.data['flow_run_id']} already exists")
            created, flow = True, evolve(flow, event)
        elif event.type.startswith("flow-run."):
            flow = _judged(flow, event, index, now, "flow run")
        elif creates_task_run(event.type, event.data):
            key = str(event.data["task_run_id"])
            if key in tasks:
                raise _refuse(index, event, f"task run {key} already exists")
            created_as = RunState.named("Pending")  # a reused run's one event moves on from its creation
            tasks[key] = created_as if event.type == "task-run.created" else _judged(created_as, event, index, now, "task run")
        elif state_from_event_type(event.type):
            key = str(event.data["task_run_id"])
            tasks[key] = _judged(tasks.get(key), event, index, now, "task run")


def _judged(current: RunState | None, event: NewEvent, index: int, now: datetime, what: str) -> RunState | None:
    proposed = evolve(None, event)
    if proposed is None:  # a run event that is not a state change
        return current
    decision = decide(current, proposed, now)
    if isinstance(decision, Rejected):
        raise _refuse(index, event, f"the {what} cannot become {proposed.name}: {decision.reason}")
    return proposed
