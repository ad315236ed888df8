"""Export then import gives back the same log, whatever was in it: same ids, streams, stream
positions, types, times, payloads, meta and hashes, in the same order; a second import writes
nothing. From a fresh SQLite file into each backend."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.events import EventMeta, EventStore, NewEvent, StreamAppend, open_store
from ledgerflow.events.backup import export_line, import_file
from tests.properties.test_store_machine import TYPES, payloads

metas = st.builds(
    EventMeta,
    correlation_id=st.none() | st.uuids(),
    causation_id=st.none() | st.uuids(),
    actor=st.none() | st.text(max_size=8),
)
new_events = st.builds(
    NewEvent,
    type=st.sampled_from(TYPES),
    id=st.uuids(),
    data=payloads,
    meta=metas,
    occurred=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
)
# Each append: some of the example's streams (by index), each with a few new events.
appends = st.lists(
    st.dictionaries(st.integers(0, 3), st.lists(new_events, min_size=1, max_size=3), min_size=1, max_size=3),
    min_size=1,
    max_size=6,
)


def _seen(store: EventStore, names: list[str]) -> list[tuple[object, ...]]:
    found = [e for name in names for e in store.read_stream(name)]
    found.sort(key=lambda e: (int(e.cursor.split(".")[0]), e.position))
    return [(e.id, e.stream, e.stream_position, e.type, e.occurred, e.data, e.meta, e.hash) for e in found]


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=appends)
def test_export_then_import_round_trips_any_log(store: EventStore, batches: list[dict[int, list[NewEvent]]]) -> None:
    prefix = uuid.uuid4().hex[:8]
    names = [f"{prefix}-s{n}" for n in range(4)]
    with tempfile.TemporaryDirectory() as folder:
        source = open_store(f"sqlite:///{Path(folder) / 'source.db'}")
        try:
            for batch in batches:
                # Fresh ids: the target store is shared by the examples, and hypothesis repeats uuids.
                source.append_streams([
                    StreamAppend(names[n], [e.model_copy(update={"id": uuid.uuid4()}) for e in events])
                    for n, events in batch.items()
                ])
            backup = Path(folder) / "backup.jsonl"
            with backup.open("wb") as file:
                for event in source.iter_all():
                    file.write(export_line(event))
            first = import_file(store, backup)
            assert first.written == first.lines == sum(len(e) for batch in batches for e in batch.values())
            assert _seen(store, names) == _seen(source, names)
            second = import_file(store, backup)
            assert second.written == 0 and second.already_stored == first.lines
            assert _seen(store, names) == _seen(source, names)
        finally:
            source.close()
    assert store.verify().intact
