"""`Variable` (Prefect's `prefect.variables.Variable`): named JSON values kept in the log.

Each variable is a stream `variable-<name>`: `variable.set` events ({name, value, tags}) and
`variable.unset` ({name}); its value is the last of them. Every write is appended with the
version it was decided on, so two writers racing on one name never both win: `set` without
`overwrite=True` on a name that exists raises, as in Prefect, even when the other writer got
there a moment earlier. Reads and writes go to this process's log: the embedded store, or the
API server when `LEDGERFLOW_API_URL` is set.

In async code `Variable.get/set/unset` return awaitables (as in Prefect); `aget/aset/aunset`
are the explicit async twins.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ledgerflow.events import NO_STREAM, ConcurrencyConflict, EventMeta, NewEvent, StoredEvent, StreamAppend
from ledgerflow.runtime import config
from ledgerflow.runtime.context import flow_run_var
from ledgerflow.runtime.dispatch import in_async_context

__all__ = ["MAX_VALUE_LENGTH", "Variable", "variable_stream"]

MAX_VALUE_LENGTH = 5000
"""Characters of a value's JSON (Prefect's limit)."""
_NAME = re.compile(r"[a-z0-9_-]{1,255}")
_ATTEMPTS = 20


def variable_stream(name: str) -> str:
    return f"variable-{name}"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"variable name {name!r} must be 1-255 lowercase letters, digits, dashes or underscores"
        )


def _current(events: list[StoredEvent]) -> dict[str, Any] | None:
    """The variable as its stream leaves it (None: unset or never set)."""
    last = next((e for e in reversed(events) if e.type in ("variable.set", "variable.unset")), None)
    return dict(last.data) if last is not None and last.type == "variable.set" else None


def _meta() -> EventMeta:
    context = flow_run_var.get()
    correlation = getattr(getattr(context, "meta", None), "correlation_id", None)
    return EventMeta(correlation_id=correlation, actor="variable")


class Variable(BaseModel):
    """A named, mutable JSON value."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: Any = None
    tags: list[str] = Field(default_factory=list)

    # -- sync (or awaitable in async code) ----------------------------------------------------

    @classmethod
    def get(cls, name: str, default: Any = None) -> Any:
        """The variable's value, or `default` when it is not set."""
        if in_async_context():
            return cls.aget(name, default)
        return cls._get(name, default)

    @classmethod
    def set(cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False) -> Any:
        """Set the variable; raise ValueError if it exists and `overwrite` is False."""
        if in_async_context():
            return cls.aset(name, value, tags, overwrite)
        return cls._set(name, value, tags, overwrite)

    @classmethod
    def unset(cls, name: str) -> Any:
        """Remove the variable: True if it existed, False otherwise."""
        if in_async_context():
            return cls.aunset(name)
        return cls._unset(name)

    # -- async twins ------------------------------------------------------------------------

    @classmethod
    async def aget(cls, name: str, default: Any = None) -> Any:
        return await asyncio.to_thread(cls._get, name, default)

    @classmethod
    async def aset(cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False) -> Variable:
        return await asyncio.to_thread(cls._set, name, value, tags, overwrite)

    @classmethod
    async def aunset(cls, name: str) -> bool:
        return await asyncio.to_thread(cls._unset, name)

    # -- the log ----------------------------------------------------------------------------

    @classmethod
    def _get(cls, name: str, default: Any) -> Any:
        _check_name(name)
        found = _current(config.current().log.read_stream(variable_stream(name)))
        return default if found is None else found.get("value")

    @classmethod
    def _set(cls, name: str, value: Any, tags: list[str] | None, overwrite: bool) -> Variable:
        _check_name(name)
        try:
            size = len(orjson.dumps(value).decode())
        except TypeError as exc:
            raise ValueError(f"the value of variable {name!r} must be JSON: {exc}") from None
        if size > MAX_VALUE_LENGTH:
            raise ValueError(f"the value of variable {name!r} takes {size} characters as JSON; at most {MAX_VALUE_LENGTH}")
        log = config.current().log
        stream = variable_stream(name)
        for _ in range(_ATTEMPTS):
            events = log.read_stream(stream)
            existing = _current(events)
            if existing is not None and not overwrite:
                raise ValueError(f"Variable {name!r} already exists. Use `overwrite=True` to update it.")
            kept_tags = list(tags) if tags is not None else list((existing or {}).get("tags") or [])
            data = {"name": name, "value": value, "tags": kept_tags}
            expected = events[-1].stream_position if events else NO_STREAM
            try:
                log.append_streams([StreamAppend(stream, [NewEvent(type="variable.set", data=data, meta=_meta())], expected)])
            except ConcurrencyConflict:
                continue  # someone else wrote it meanwhile: decide again on what they wrote
            return cls(name=name, value=value, tags=kept_tags)
        raise ValueError(f"variable {name!r} kept changing under {_ATTEMPTS} attempts to set it")

    @classmethod
    def _unset(cls, name: str) -> bool:
        _check_name(name)
        log = config.current().log
        stream = variable_stream(name)
        for _ in range(_ATTEMPTS):
            events = log.read_stream(stream)
            if _current(events) is None:
                return False
            unset = NewEvent(type="variable.unset", data={"name": name}, meta=_meta())
            try:
                log.append_streams([StreamAppend(stream, [unset], events[-1].stream_position)])
            except ConcurrencyConflict:
                continue
            return True
        raise ValueError(f"variable {name!r} kept changing under {_ATTEMPTS} attempts to unset it")
