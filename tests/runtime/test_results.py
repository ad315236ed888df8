"""The result store: content addresses, JSON or pickle, written once."""

from __future__ import annotations

import hashlib
import pickle
import threading
from pathlib import Path

import orjson
import pytest

from runtime.results import ResultStore


def test_json_values_are_named_by_the_hash_of_their_bytes(tmp_path: Path) -> None:
    results = ResultStore(tmp_path)
    ref = results.persist({"a": [1, 2]})
    results.sync()
    payload = orjson.dumps({"a": [1, 2]})
    assert ref == {"persisted": True, "key": f"{hashlib.sha256(payload).hexdigest()}.json", "serializer": "json"}
    assert (tmp_path / ref["key"]).read_bytes() == payload
    assert ResultStore(tmp_path).load_ref(ref) == {"a": [1, 2]}


def test_values_json_cannot_hold_are_pickled(tmp_path: Path) -> None:
    results = ResultStore(tmp_path)
    ref = results.persist({1, 2, 3})
    assert results.load(ref["key"]) == {1, 2, 3}  # before the file is known to be written
    results.close()
    assert ref["serializer"] == "pickle" and ref["key"].endswith(".pickle")
    assert pickle.loads((tmp_path / ref["key"]).read_bytes()) == {1, 2, 3}
    assert ResultStore(tmp_path).load(ref["key"]) == {1, 2, 3}


def test_an_existing_address_is_not_written_again(tmp_path: Path) -> None:
    first, second = ResultStore(tmp_path), ResultStore(tmp_path)
    ref = first.persist(list(range(100)))
    first.close()
    before = (tmp_path / ref["key"]).stat()
    assert second.persist(list(range(100))) == ref  # another process, same value
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
    results.persist("x")
    with pytest.raises(FileNotFoundError):
        results.sync()
    results.close()
