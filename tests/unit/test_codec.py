"""Serialisation of payloads, the 1 MiB limit, the hash chain, stream names and cursors."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.events import (
    Cursor,
    EventMeta,
    EventTooLarge,
    InvalidCursor,
    InvalidStreamName,
    NewEvent,
    PayloadNotSerializable,
)
from ledgerflow.events.codec import (
    GENESIS_HASH,
    MAX_EVENT_BYTES,
    chain_hash,
    check_stream_name,
    decode,
    encode,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_payloads_round_trip(data: dict[str, object]) -> None:
    encoded = encode(NewEvent(type="t", data=data))
    assert decode(encoded.data) == data
    assert decode(encoded.meta) == {}


def test_the_limit_is_exactly_one_mebibyte_of_data_and_meta() -> None:
    assert MAX_EVENT_BYTES == 1024 * 1024
    meta = EventMeta(actor="a")
    overhead = len('{"blob":""}') + len('{"actor":"a"}')
    fits = NewEvent(type="t", data={"blob": "x" * (MAX_EVENT_BYTES - overhead)}, meta=meta)
    encoded = encode(fits)
    assert len(encoded.data) + len(encoded.meta) == MAX_EVENT_BYTES
    too_big = NewEvent(type="t", data={"blob": "x" * (MAX_EVENT_BYTES - overhead + 1)}, meta=meta)
    with pytest.raises(EventTooLarge, match=f"{MAX_EVENT_BYTES + 1} bytes.*{MAX_EVENT_BYTES}"):
        encode(too_big, 7)


def test_the_limit_counts_bytes_not_characters() -> None:
    overhead = len('{"blob":""}') + len("{}")
    euro = "€"  # three bytes in UTF-8
    chars = (MAX_EVENT_BYTES - overhead) // 3 + 1
    with pytest.raises(EventTooLarge):
        encode(NewEvent(type="t", data={"blob": euro * chars}))
    encode(NewEvent(type="t", data={"blob": euro * (chars - 1)}))


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, b"bytes", {1: "nested int key"}, {(1, 2): "tuple key"}, "\ud800", 2**64, -(2**63) - 1],
    ids=["object", "set", "bytes", "int-key", "tuple-key", "lone-surrogate", "2**64", "-2**63-1"],
)
def test_unserialisable_payloads_name_the_event(value: object) -> None:
    with pytest.raises(PayloadNotSerializable, match="event 3 .*my.type"):
        encode(NewEvent(type="my.type", data={"x": value}), 3)


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 1e308, -0.0])
def test_extreme_numbers_that_json_can_hold(value: float) -> None:
    assert decode(encode(NewEvent(type="t", data={"x": value})).data) == {"x": value}


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(PayloadNotSerializable):
        encode(NewEvent(type="t", data={"x": value}))


def test_chain_hash_covers_every_field_and_the_previous_hash() -> None:
    fields: dict[str, object] = {
        "event_id": "e", "stream": "s", "stream_position": 1, "type": "t",
        "occurred": datetime(2026, 1, 1, tzinfo=UTC), "data": "{}", "meta": "{}",
    }
    base = chain_hash(GENESIS_HASH, **fields)  # type: ignore[arg-type]
    assert len(base) == 32
    assert chain_hash(GENESIS_HASH, **fields) == base  # type: ignore[arg-type]
    assert chain_hash(b"\x01" * 32, **fields) != base  # type: ignore[arg-type]
    changes = [("event_id", "f"), ("stream", "t"), ("stream_position", 2), ("type", "u"),
               ("occurred", datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)), ("data", '{"a":1}'), ("meta", '{"a":1}')]
    for key, other in changes:
        assert chain_hash(GENESIS_HASH, **{**fields, key: other}) != base, key  # type: ignore[arg-type]


def test_chain_hash_fields_cannot_be_shifted_into_each_other() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    one = chain_hash(GENESIS_HASH, event_id="e", stream="s", stream_position=1, type="t", occurred=when, data='{"a":1}', meta="{}")
    two = chain_hash(GENESIS_HASH, event_id="e", stream="s", stream_position=1, type="t", occurred=when, data='{"a":1}{', meta="}")
    assert one != two


@pytest.mark.parametrize("name", ["flow-run-1b2c", "work-pool-default", "a", "x:y@z/1+2.3_4", "0", "s" * 200])
def test_valid_stream_names(name: str) -> None:
    assert check_stream_name(name) == name


@pytest.mark.parametrize(
    "name", ["", " lead", "has space", "-lead", ".lead", "a" * 201, "tab\t", "é", "a*b", "a%b", "a\\b", None, 7]
)
def test_invalid_stream_names(name: object) -> None:
    with pytest.raises(InvalidStreamName, match="stream name"):
        check_stream_name(name)  # type: ignore[arg-type]


def test_a_stream_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidStreamName):
        check_stream_name("run-1\n")


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_cursors_round_trip(tx: int, position: int) -> None:
    cursor = Cursor(tx, position)
    assert str(cursor) == f"{tx}.{position}"
    assert Cursor.parse(str(cursor)) == cursor
    assert Cursor.parse(cursor) is cursor


@given(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)))
def test_cursors_order_by_transaction_then_position(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (Cursor(*a) < Cursor(*b)) == (a < b)


def test_no_cursor_means_the_start() -> None:
    assert Cursor.parse(None) == Cursor(0, 0)
    assert str(Cursor.parse(None)) == "0.0"


@pytest.mark.parametrize("bad", ["", "1", "a.b", "1.-2", " 1.2", "1.2 ", "1.2.3", "٣.٤", "1.", ".1", "+1.2", "1_0.2"])
def test_bad_cursors(bad: str) -> None:
    with pytest.raises(InvalidCursor, match="not a cursor"):
        Cursor.parse(bad)
