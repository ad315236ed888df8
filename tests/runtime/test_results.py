"""The result store: content addresses, JSON or pickle, written once."""

from __future__ import annotations

import hashlib
import pickle
import threading
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import orjson
import pytest

from ledgerflow.runtime.results import INLINE_LIMIT, ResultStore


def test_small_json_values_travel_inline_named_by_their_hash(tmp_path: Path) -> None:
    results = ResultStore(tmp_path)
    ref = results.persist({"a": [1, 2], "when": [3, 4]})
    results.close()
    payload = orjson.dumps({"a": [1, 2], "when": [3, 4]})
    assert ref == {
        "persisted": True, "inline": True, "value": {"a": [1, 2], "when": [3, 4]},
        "key": f"{hashlib.sha256(payload).hexdigest()}.json", "serializer": "json",
    }
    assert list(tmp_path.iterdir()) == []  # no file: the event holds the value
    assert ResultStore(tmp_path).load_ref(ref) == {"a": [1, 2], "when": [3, 4]}


def test_json_values_past_the_inline_limit_go_to_a_file_named_by_their_hash(tmp_path: Path) -> None:
    value = "x" * INLINE_LIMIT  # its JSON has two quotes more than the limit
    results = ResultStore(tmp_path)
    ref = results.persist(value)
    results.sync()
    payload = orjson.dumps(value)
    assert ref == {"persisted": True, "key": f"{hashlib.sha256(payload).hexdigest()}.json", "serializer": "json"}
    assert (tmp_path / ref["key"]).read_bytes() == payload
    assert ResultStore(tmp_path).load_ref(ref) == value
    assert results.persist("x" * (INLINE_LIMIT - 2))["inline"] is True  # exactly at the limit


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def test_values_json_cannot_hold_are_pickled(tmp_path: Path) -> None:
    results = ResultStore(tmp_path)
    ref = results.persist(Point(1, 2))
    assert results.load(ref["key"]) == Point(1, 2)  # before the file is known to be written
    results.close()
    assert ref["serializer"] == "pickle" and ref["key"].endswith(".pickle")
    assert pickle.loads((tmp_path / ref["key"]).read_bytes()) == Point(1, 2)
    assert ResultStore(tmp_path).load(ref["key"]) == Point(1, 2)


def test_an_existing_address_is_not_written_again(tmp_path: Path) -> None:
    first, second = ResultStore(tmp_path), ResultStore(tmp_path)
    ref = first.persist(list(range(1000)))
    first.close()
    before = (tmp_path / ref["key"]).stat()
    assert second.persist(list(range(1000))) == ref  # another process, same value
    second.close()
    after = (tmp_path / ref["key"]).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert [p.name for p in tmp_path.iterdir()] == [ref["key"]]  # no partial files left behind


def test_an_unserialisable_value_is_reported_not_stored(tmp_path: Path) -> None:
    results = ResultStore(tmp_path)
    ref = results.persist(threading.Lock())
    results.close()
    assert ref["persisted"] is False and "cannot be serialised" in ref["reason"]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LookupError, match="not persisted"):
        ResultStore(tmp_path).load_ref(ref)


def test_a_failed_write_is_raised_by_sync(tmp_path: Path) -> None:
    results = ResultStore(tmp_path / "results")
    (tmp_path / "results").rmdir()  # the folder vanishes under the store
    results.persist("x" * INLINE_LIMIT)
    with pytest.raises(FileNotFoundError):
        results.sync()
    results.close()


def test_results_come_back_as_the_python_types_they_were(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal
    from uuid import UUID

    store = ResultStore(tmp_path)
    values: list[Any] = [
        (1, 2, (3, "x")),
        {"when": datetime(2024, 5, 1, 12, 0, tzinfo=UTC), "day": date(2024, 5, 1)},
        {1: "int keys", (2, 3): "tuple keys"},
        {"$lf": "a user key that looks like a tag", "v": 1},
        {frozenset({1, 2}), frozenset({3})},
        [b"\x00\xff", UUID(int=5), Decimal("1.10")],
        ["plain", {"json": [1, 2.5, None, True]}],
        tuple(range(400)),  # bigger than what is kept inline: a file
    ]
    for value in values:
        ref = store.persist(value)
        assert ref["persisted"], ref
        again = store.load_ref(ref)
        assert again == value and type(again) is type(value)
    assert store.persist(["plain"])["serializer"] == "json"
    assert store.persist((1, 2))["serializer"] == "json+types"
