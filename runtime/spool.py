"""Where a remote run's events wait while the API server cannot take them.

`LEDGERFLOW_HOME/spool/events.jsonl` is append-only: one line per writer batch, in the body
format of `POST /api/events` (events keep their ids and the expected versions the writer
would have sent). Each line is fsync'd before the run goes on, so a run that reports success
has its events on disk. The file is created readable by its owner only.

`forward` sends the lines in order (consecutive lines merged into one request) and, after each
request the server accepted, atomically rewrites the file without the delivered lines. A crash
between the two sends those lines again on the next push: the server stores each event id
once, so nothing is lost and nothing is doubled. A lock file serialises appends and pushes
across processes (a push replaces the file, so no append may hold the old one open).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ledgerflow.events import ANY, ConcurrencyConflict, EventStoreError, InvalidEvent, NewEvent, StreamAppend
from ledgerflow.events.model import ExpectedVersion
from ledgerflow.runtime.eventlog import EventSink

__all__ = ["PushReport", "Spool", "decode_appends", "encode_appends"]

_CHUNK_EVENTS = 2000
"""At most this many events per forwarding request (a run's events usually go in one)."""


def encode_appends(appends: Sequence[StreamAppend]) -> bytes:
    """The body of `POST /api/events` for `appends`."""
    return orjson.dumps({
        "appends": [
            {"stream": stream, "events": [_event(e) for e in events], "expected_version": expected}
            for stream, events, expected in appends
        ]
    })


def _event(event: NewEvent) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "data": event.data, "meta": event.meta.as_json(), "occurred": event.occurred}


def decode_appends(line: bytes) -> list[StreamAppend]:
    body = orjson.loads(line)
    return [
        StreamAppend(part["stream"], [NewEvent.model_validate(e) for e in part["events"]], part["expected_version"])
        for part in body["appends"]
    ]


@dataclass(frozen=True)
class PushReport:
    delivered: int
    """Events the server now holds (those it already had from an interrupted push included)."""
    refused: int
    """Events the server refused as invalid: moved to `Spool.refused_path`, never sent again."""
    waiting: int
    """Events still in the spool, because the server stopped answering (`error`)."""
    error: str | None = None


class Spool:
    @classmethod
    def in_home(cls, home: Path) -> Spool:
        """The spool of the ledgerflow home `home`."""
        return cls(home / "spool")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "events.jsonl"
        self.refused_path = folder / "refused.jsonl"
        self._lock_path = folder / "spool.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, appends: Sequence[StreamAppend]) -> None:
        """Add one batch and fsync it."""
        line = encode_appends(appends) + b"\n"
        with self._locked():
            _append_line(self.path, line)

    def pending(self) -> int:
        """How many events wait in the spool."""
        with self._locked():
            return sum(_count(appends) for appends in _read(self.path))

    def forward(self, sink: EventSink) -> PushReport:
        """Send the spooled batches in order, until they are all sent or the sink fails."""
        with self._locked():
            batches = _read(self.path)
            delivered = refused = 0
            while batches:
                chunk, used = _merge(batches)
                try:
                    _send(sink, chunk)
                except InvalidEvent:
                    refused_lines = b"".join(encode_appends(b) + b"\n" for b in batches[:used])
                    _append_line(self.refused_path, refused_lines)
                    refused += sum(_count(b) for b in batches[:used])
                except EventStoreError as exc:
                    waiting = sum(_count(b) for b in batches)
                    return PushReport(delivered, refused, waiting, " ".join(str(exc).split()))
                else:
                    delivered += _count(chunk)
                batches = batches[used:]
                _replace(self.path, b"".join(encode_appends(b) + b"\n" for b in batches))
            return PushReport(delivered, refused, 0)


def _send(sink: EventSink, chunk: list[StreamAppend]) -> None:
    """Append `chunk`; a stream someone else wrote to since (a cancel, a crash verdict) takes
    the rest of our events after theirs, and the server's rules decide what stays."""
    for _ in range(len(chunk) + 1):
        try:
            sink.append_streams(chunk)
            return
        except ConcurrencyConflict as conflict:
            if not any(part.stream == conflict.stream and part.expected_version != ANY for part in chunk):
                raise
            chunk = [part._replace(expected_version=ANY) if part.stream == conflict.stream else part for part in chunk]
    raise AssertionError("unreachable: each conflict frees one stream")


def _merge(batches: list[list[StreamAppend]]) -> tuple[list[StreamAppend], int]:
    """Consecutive batches as one append (each stream once, its events in order, the expected
    version of its first batch); how many batches it took."""
    merged: dict[str, tuple[list[NewEvent], ExpectedVersion]] = {}
    size = used = 0
    for batch in batches:
        if used and size + _count(batch) > _CHUNK_EVENTS:
            break
        if any(not _follows(merged.get(part.stream), part) for part in batch):
            break
        for stream, events, expected in batch:
            if stream in merged:
                merged[stream][0].extend(events)
            else:
                merged[stream] = (list(events), expected)
        size += _count(batch)
        used += 1
    return [StreamAppend(stream, events, expected) for stream, (events, expected) in merged.items()], used


def _follows(earlier: tuple[list[NewEvent], ExpectedVersion] | None, part: StreamAppend) -> bool:
    """Whether `part` can join the stream's events merged so far without changing its meaning."""
    if earlier is None:
        return True
    events, expected = earlier
    if part.expected_version == ANY:
        return expected == ANY
    return isinstance(expected, int) and part.expected_version == expected + len(events)


def _count(appends: Sequence[StreamAppend]) -> int:
    return sum(len(part.events) for part in appends)


def _read(path: Path) -> list[list[StreamAppend]]:
    """The spooled batches; a last line torn by a crash mid-write (never acknowledged) is skipped."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return []
    batches = []
    for line in content.split(b"\n"):
        if not line.strip():
            continue
        try:
            batches.append(decode_appends(line))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return batches


def _append_line(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # end a line torn by a crash, so it cannot swallow this one
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_folder(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _replace(path: Path, data: bytes) -> None:
    if not data:
        path.unlink(missing_ok=True)
        _sync_folder(path.parent)
        return
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
