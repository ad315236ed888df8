"""Results as JSON that gives back the Python value it was made from.

Plain JSON turns a tuple into a list, a set into an error, a datetime into a string: a cached
or reused result would come back as something else than the task returned. Values made only
of dicts with string keys, lists, strings, numbers, booleans and None are written as plain
JSON (`json`); values that also hold tuples, sets, frozensets, bytes, dates and times, UUIDs,
decimals or dicts with other keys are written as tagged JSON (`json+types`): each such value
becomes `{"$lf": "<type>", "v": ...}` (a dict that has a `$lf` key of its own is tagged too, so
nothing is mistaken for a tag). Anything else goes to pickle (`ResultStore`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

__all__ = ["NotTaggable", "is_plain_json", "tag", "untag"]

_TAG = "$lf"
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class NotTaggable(TypeError):
    """A value tagged JSON cannot represent (it needs pickle)."""


def is_plain_json(value: Any) -> bool:
    """Whether JSON gives `value` back exactly (types included)."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is list:
        return all(is_plain_json(item) for item in value)
    if kind is dict:
        return all(type(key) is str and key != _TAG and is_plain_json(item) for key, item in value.items())
    return False


def _tagged(name: str, inner: Any) -> dict[str, Any]:
    return {_TAG: name, "v": inner}


_ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {
    tuple: lambda v: _tagged("tuple", [tag(item) for item in v]),
    set: lambda v: _tagged("set", [tag(item) for item in v]),
    frozenset: lambda v: _tagged("frozenset", [tag(item) for item in v]),
    bytes: lambda v: _tagged("bytes", base64.b64encode(v).decode()),
    datetime: lambda v: _tagged("datetime", v.isoformat()),
    date: lambda v: _tagged("date", v.isoformat()),
    time: lambda v: _tagged("time", v.isoformat()),
    timedelta: lambda v: _tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    UUID: lambda v: _tagged("uuid", str(v)),
    Decimal: lambda v: _tagged("decimal", str(v)),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(untag(item) for item in v),
    "set": lambda v: {untag(item) for item in v},
    "frozenset": lambda v: frozenset(untag(item) for item in v),
    "bytes": lambda v: base64.b64decode(v),
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": UUID,
    "decimal": Decimal,
    "dict": lambda v: {untag(key): untag(item) for key, item in v},
}


def tag(value: Any) -> Any:
    """`value` as tagged JSON; NotTaggable when a part of it has no JSON form."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return value
    if kind is list:
        return [tag(item) for item in value]
    if kind is dict:
        if all(type(key) is str and key != _TAG for key in value):
            return {key: tag(item) for key, item in value.items()}
        return _tagged("dict", [[tag(key), tag(item)] for key, item in value.items()])
    encode = _ENCODERS.get(kind)
    if encode is None:
        raise NotTaggable(f"{kind.__module__}.{kind.__qualname__}")
    return encode(value)


def untag(value: Any) -> Any:
    """The Python value of tagged JSON."""
    if type(value) is list:
        return [untag(item) for item in value]
    if type(value) is dict:
        name = value.get(_TAG)
        if name is not None and len(value) == 2 and "v" in value:
            return _DECODERS[name](value["v"])
        return {key: untag(item) for key, item in value.items()}
    return value
