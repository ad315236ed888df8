"""Backup, restore and migration of the log as JSON lines, with the hash chains re-checked.

`export_line` writes an event as one JSON object; an export holds every event in global order: what the writer said (`id`,
`stream`, `stream_position`, `type`, `occurred`, `data`, `meta`), the chain `hash`, and
where it was in the source (`position`, `recorded`, `cursor`, for `export --after`).

`import_file` reads such a file twice. The first pass checks everything and writes nothing:
each line parses, each stream's positions follow on from what the target store already has,
each line's hash is recomputed from its content and the previous hash of its stream (a changed
line, a dropped line or reordered lines break the chain and are named by line number), and the
events the target already has are the same events. The second pass appends what the target
lacks in batches, in the file's order, each batch one transaction with expected versions.
Importing the same file twice writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from ledgerflow.events.codec import GENESIS_HASH, chain_hash, check_stream_name, encode
from ledgerflow.events.errors import ConcurrencyConflict, InvalidBackup, InvalidEvent
from ledgerflow.events.model import AwareDatetime, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.events.store import EventStore
from ledgerflow.events.tables import events, streams
from ledgerflow.events.transactions import engine_of

__all__ = ["EXPORT_BATCH", "ImportReport", "export_line", "import_file"]

EXPORT_BATCH = 2000
"""Events per read when exporting, and per append when importing."""
_HEADS_CHUNK = 500


def export_line(event: StoredEvent) -> bytes:
    """The event as one JSON line of an export (with its newline)."""
    return orjson.dumps({
        "id": event.id,
        "stream": event.stream,
        "stream_position": event.stream_position,
        "type": event.type,
        "occurred": event.occurred,
        "data": event.data,
        "meta": event.meta.as_json(),
        "hash": event.hash,
        "position": event.position,
        "recorded": event.recorded,
        "cursor": event.cursor,
    }, option=orjson.OPT_APPEND_NEWLINE)


class _Line(BaseModel):
    """An exported event as read back; where it was in the source store is not needed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: UUID
    stream: str
    stream_position: int = Field(ge=1)
    type: str
    occurred: AwareDatetime
    data: dict[str, Any]
    meta: EventMeta
    hash: str = Field(pattern="^[0-9a-f]{64}$")


class _Parsed(NamedTuple):
    number: int
    line: _Line
    event: NewEvent


@dataclass
class _Chain:
    """One stream as the first pass follows it: the target's head, and the file's progress."""

    target_version: int
    target_hash: bytes
    next_position: int = 0
    previous: bytes = GENESIS_HASH
    last_stored: tuple[int, int, bytes] | None = None
    """(line, position, hash) of the file's last event the target should already hold."""


@dataclass(frozen=True)
class ImportReport:
    lines: int
    written: int
    already_stored: int
    streams: int


def import_file(
    store: EventStore, path: Path, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import the events of an export file that `store` lacks; `progress(lines read, written)`.

    Raises InvalidBackup naming the first bad line, with nothing written, when a line does not
    parse, does not continue its stream's chain, or contradicts what the store already holds.
    """
    chains = _check(store, path)
    written = skipped = 0
    batch: list[_Parsed] = []
    in_batch: set[str] = set()
    for parsed in _parse(path):
        stream = parsed.line.stream
        if parsed.line.stream_position <= chains[stream].target_version:
            skipped += 1
            continue
        # One append takes a stream once: a stream coming back after another starts a new
        # batch, so that the file's order is kept.
        if len(batch) >= EXPORT_BATCH or (stream in in_batch and batch[-1].line.stream != stream):
            written += _append(store, batch)
            batch, in_batch = [], set()
            if progress:
                progress(parsed.number - 1, written)
        batch.append(parsed)
        in_batch.add(stream)
    written += _append(store, batch)
    lines = written + skipped
    if progress:
        progress(lines, written)
    return ImportReport(lines, written, skipped, len(chains))


def _append(store: EventStore, batch: list[_Parsed]) -> int:
    if not batch:
        return 0
    parts: dict[str, list[_Parsed]] = {}
    for parsed in batch:
        parts.setdefault(parsed.line.stream, []).append(parsed)
    appends = [
        StreamAppend(stream, [p.event for p in items], items[0].line.stream_position - 1)
        for stream, items in parts.items()
    ]
    try:
        stored = store.append_streams(appends)
    except ConcurrencyConflict as exc:
        raise InvalidBackup(f"the target store changed during the import ({exc}); import the file again") from None
    by_id = {p.event.id: p for p in batch}
    for event in stored:
        parsed = by_id[event.id]
        if event.hash != parsed.line.hash or event.stream != parsed.line.stream:
            raise InvalidBackup(
                f"line {parsed.number}: event {event.id} is already stored as {event.stream}#{event.stream_position}, "
                "not where the file puts it"
            )
    return len(stored)


def _parse(path: Path) -> Iterator[_Parsed]:
    try:
        with path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                if raw.strip():
                    yield _parse_line(number, raw)
    except OSError as exc:
        raise InvalidBackup(f"{path} cannot be read: {exc.strerror or exc}") from None


def _parse_line(number: int, raw: bytes) -> _Parsed:
    try:
        line = _Line.model_validate(orjson.loads(raw))
        check_stream_name(line.stream)
        event = NewEvent(type=line.type, data=line.data, id=line.id, meta=line.meta, occurred=line.occurred)
    except InvalidEvent as exc:
        raise InvalidBackup(f"line {number}: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidBackup(f"line {number}: not JSON ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise InvalidBackup(f"line {number}: {where + ': ' if where else ''}{first['msg']}") from None
    return _Parsed(number, line, event)


def _check(store: EventStore, path: Path) -> dict[str, _Chain]:
    """The first pass: every line checked against its stream's chain; nothing written."""
    chains: dict[str, _Chain] = {}
    pending: list[_Parsed] = []
    for parsed in _parse(path):
        pending.append(parsed)
        if len(pending) >= _HEADS_CHUNK:
            _check_lines(store, pending, chains)
            pending = []
    _check_lines(store, pending, chains)
    for stream, chain in chains.items():
        if chain.last_stored is not None:
            _check_stored(store, stream, *chain.last_stored)
    return chains


def _check_lines(store: EventStore, lines: list[_Parsed], chains: dict[str, _Chain]) -> None:
    new = sorted({p.line.stream for p in lines} - chains.keys())
    chains.update(_target_heads(store, new))
    new_ids: dict[UUID, int] = {}
    for number, line, event in lines:
        chain = chains[line.stream]
        position = line.stream_position
        if chain.next_position == 0:
            chain.previous = _previous_hash(store, number, line, chain)
        elif position != chain.next_position:
            raise InvalidBackup(
                f"line {number}: {line.stream}#{position} follows #{chain.next_position - 1}: "
                "a line is missing or out of order"
            )
        try:
            encoded = encode(event)
        except InvalidEvent as exc:
            raise InvalidBackup(f"line {number}: {exc}") from None
        recomputed = chain_hash(
            chain.previous, event_id=str(event.id), stream=line.stream, stream_position=position,
            type=event.type, occurred=event.occurred, data=encoded.data, meta=encoded.meta,
        )
        if recomputed.hex() != line.hash:
            raise InvalidBackup(
                f"line {number}: {line.stream}#{position} does not match its hash: the line was changed"
            )
        if position <= chain.target_version:
            chain.last_stored = (number, position, recomputed)
        else:
            new_ids[event.id] = number
        chain.previous, chain.next_position = recomputed, position + 1
    _check_ids_unused(store, new_ids)


def _check_ids_unused(store: EventStore, ids: dict[UUID, int]) -> None:
    """Events the target lacks in their stream must not be stored elsewhere under their id."""
    if not ids:
        return
    with engine_of(store).connect() as conn:
        query = select(events.c.id, events.c.stream, events.c.stream_position).where(events.c.id.in_(list(ids)))
        clash = conn.execute(query.limit(1)).first()
    if clash is not None:
        raise InvalidBackup(
            f"line {ids[clash.id]}: event {clash.id} is already stored as {clash.stream}#{clash.stream_position}, "
            "not where the file puts it"
        )


def _target_heads(store: EventStore, names: list[str]) -> dict[str, _Chain]:
    found: dict[str, _Chain] = {}
    with engine_of(store).connect() as conn:
        for start in range(0, len(names), _HEADS_CHUNK):
            chunk = names[start : start + _HEADS_CHUNK]
            query = select(streams.c.stream, streams.c.version, streams.c.head_hash)
            rows = conn.execute(query.where(streams.c.stream.in_(chunk)))
            found.update({row.stream: _Chain(row.version, row.head_hash) for row in rows})
    return {name: found.get(name) or _Chain(0, GENESIS_HASH) for name in names}


def _previous_hash(store: EventStore, number: int, line: _Line, chain: _Chain) -> bytes:
    """The hash the stream's first line of the file chains onto."""
    position = line.stream_position
    if position == 1:
        return GENESIS_HASH
    if position - 1 > chain.target_version:
        raise InvalidBackup(
            f"line {number}: {line.stream} starts at #{position} but the target store has "
            f"{chain.target_version} of its events: import the earlier export first"
        )
    return bytes.fromhex(store.read_stream(line.stream, position - 1, 1)[0].hash)


def _check_stored(store: EventStore, stream: str, number: int, position: int, hash_: bytes) -> None:
    """The file's last event of `stream` that the target holds must be the same event: its
    hash covers every event before it, so the whole overlap is the same history."""
    held = store.read_stream(stream, position, 1)[0]
    if held.hash != hash_.hex():
        raise InvalidBackup(
            f"line {number}: the target store holds a different {stream}#{position}: "
            "this backup is of another history of that stream"
        )
