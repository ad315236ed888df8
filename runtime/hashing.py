"""Stable hashes of task inputs: the same inputs hash the same in every process and every run.

Caching and replay match a task call by the hash of its inputs, so a hash that changes from
one process to the next silently misses. Inputs are written as canonical JSON (orjson, keys
sorted); what JSON cannot say directly is written by its content:

- sets and frozensets as their elements sorted by those elements' own canonical bytes;
- dataclasses by their fields, pydantic models by `model_dump(mode="json")`, enums by value;
- dates, times, UUIDs, decimals, paths, timedeltas as text;
- bytes, numpy arrays and pandas objects by a SHA-256 of their bytes, dtype and shape.

Anything else (an open connection, a lambda, an arbitrary object) has no stable content hash:
the call then has no hash, a debug line says why, and caching and replay treat it as unmatched.
Nothing is ever pickled: pickles of sets and objects differ between processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

import orjson

__all__ = ["UnhashableInput", "hash_inputs", "stable_hash"]

_log = logging.getLogger("ledgerflow.hashing")
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class UnhashableInput(TypeError):
    """An input with no stable content hash."""


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _canonical_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _numpy(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ["ndarray", str(value.dtype), list(value.shape), [_default_or_self(v) for v in value.ravel().tolist()]]
        return ["ndarray", str(value.dtype), list(value.shape), _digest(np.ascontiguousarray(value).tobytes())]
    if isinstance(value, np.generic):
        return value.item()
    raise UnhashableInput(f"{type(value).__qualname__} has no stable content hash")


def _pandas(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
        shape: list[Any]
        if isinstance(value, pd.DataFrame):
            shape = [list(map(str, value.columns)), [str(t) for t in value.dtypes]]
        else:
            shape = [str(getattr(value, "name", None)), str(value.dtype)]
        return [type(value).__name__, shape, _digest(hashed.to_numpy().tobytes())]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise UnhashableInput(f"{type(value).__qualname__} has no stable content hash")


def _default_or_self(value: Any) -> Any:
    try:
        orjson.dumps(value, option=_OPTIONS)
        return value
    except TypeError:
        return _default(value)


_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    set: lambda v: sorted(v, key=_canonical_bytes),
    frozenset: lambda v: sorted(v, key=_canonical_bytes),
    Decimal: str,
    timedelta: lambda v: ["timedelta", v.days, v.seconds, v.microseconds],
    bytes: lambda v: ["bytes", _digest(v)],
    bytearray: lambda v: ["bytes", _digest(bytes(v))],
    complex: lambda v: ["complex", v.real, v.imag],
    range: lambda v: ["range", v.start, v.stop, v.step],
}


def _default(value: Any) -> Any:
    """What orjson cannot serialise itself, by content; UnhashableInput for the rest."""
    kind = type(value)
    convert = _BY_TYPE.get(kind)
    if convert is not None:
        return convert(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=_canonical_bytes)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "model_dump") and hasattr(kind, "model_fields"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    module = kind.__module__.partition(".")[0]
    if module == "numpy":
        return _numpy(value)
    if module == "pandas":
        return _pandas(value)
    raise UnhashableInput(f"{kind.__module__}.{kind.__qualname__} has no stable content hash")


def stable_hash(value: Any) -> str:
    """The SHA-256 of `value`'s canonical JSON; UnhashableInput if it has no stable form."""
    try:
        return _digest(_canonical_bytes(value))
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, UnhashableInput):
            raise cause from None
        raise UnhashableInput(str(exc)) from None


def hash_inputs(parameters: dict[str, Any]) -> str | None:
    """A stable hash of a call's inputs; None when one of them has no stable content hash."""
    try:
        return stable_hash(parameters)
    except UnhashableInput as exc:
        _log.debug("task inputs have no stable hash, so caching and replay will not match them: %s", exc)
        return None
