"""The event envelope: what a writer may build, and that nothing built can change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from ledgerflow.events import ANY, NO_STREAM, EventMeta, NewEvent, StoredEvent, StreamAppend


def test_new_events_get_an_id_and_an_aware_utc_clock() -> None:
    first, second = NewEvent(type="t"), NewEvent(type="t")
    assert isinstance(first.id, UUID) and first.id != second.id
    assert first.occurred.tzinfo == UTC
    assert first.data == {} and first.meta == EventMeta()


def test_occurred_is_normalised_to_utc() -> None:
    local = datetime(2026, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = NewEvent(type="flow-run.Running", occurred=local)
    assert event.occurred == local
    assert event.occurred.tzinfo == UTC and event.occurred.hour == 10


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        NewEvent(type="t", occurred=datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="timezone-aware"):
        NewEvent(type="t", occurred="2026-01-01T00:00:00")  # type: ignore[arg-type]
    assert NewEvent(type="t", occurred="2026-01-01T00:00:00+01:00").occurred.hour == 23  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "good", ["t", "flow-run.Running", "task-run.AwaitingRetry", "a_b-c.d", "0abc", "x" * 200]
)
def test_event_types_that_are_accepted(good: str) -> None:
    assert NewEvent(type=good).type == good


@pytest.mark.parametrize(
    "bad", ["", "has space", "*wild", "a*", "a" * 201, ".dot-first", "-dash-first", "é", "a/b", "a%b", "a\tb"]
)
def test_event_type_rules(bad: str) -> None:
    with pytest.raises(ValidationError, match="event type"):
        NewEvent(type=bad)


def test_an_event_type_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError):
        NewEvent(type="t\n")


def test_data_must_be_an_object_with_string_keys() -> None:
    with pytest.raises(ValidationError, match="valid string"):
        NewEvent(type="t", data={1: "non-str key"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        NewEvent(type="t", data=[1, 2])  # type: ignore[arg-type]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        NewEvent(type="t", stream="s")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EventMeta(unknown="x")  # type: ignore[call-arg]


def test_events_and_meta_are_frozen() -> None:
    event = NewEvent(type="t", meta=EventMeta(actor="me"))
    with pytest.raises(ValidationError):
        event.type = "x"
    with pytest.raises(ValidationError):
        event.meta.actor = "you"
    stored = StoredEvent(
        id=uuid4(), type="t", stream="s", occurred=event.occurred, data={}, meta=event.meta,
        position=1, stream_position=1, recorded=event.occurred, hash="00", cursor="0.1",
    )
    with pytest.raises(ValidationError):
        stored.position = 2
    assert hash(event.meta) == hash(EventMeta(actor="me"))


def test_meta_keeps_only_what_was_said() -> None:
    correlation = uuid4()
    meta = EventMeta(correlation_id=correlation, actor="me")
    assert meta.as_json() == {"correlation_id": str(correlation), "actor": "me"}
    assert EventMeta().as_json() == {}
    with pytest.raises(ValidationError):
        EventMeta(causation_id="not a uuid")  # type: ignore[arg-type]


def test_stream_appends_default_to_any_version() -> None:
    event = NewEvent(type="t")
    assert StreamAppend("s", [event]) == ("s", [event], ANY)
    assert StreamAppend("s", [], NO_STREAM).expected_version == NO_STREAM
