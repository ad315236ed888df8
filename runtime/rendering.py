"""How run outcomes and inputs are written into events: errors, and parameters kept small."""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["error_info", "error_message", "formatted_traceback", "json_safe", "run_name"]

_PARAMETER_LIMIT = 8_192
_TRACEBACK_LIMIT = 32_768
_OWN_CODE = str(Path(__file__).parent) + os.sep


def run_name(
    template: str | Callable[..., Any] | None, parameters: dict[str, Any], default: str, option: str
) -> str:
    """A run's name from its `flow_run_name` / `task_run_name` option: a format string over the
    parameters, a callable (given the parameters when it takes `parameters`), or `default`."""
    if template is None:
        return default
    if callable(template):
        try:
            wants = "parameters" in inspect.signature(template).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            wants = False
        return str(template(parameters=dict(parameters)) if wants else template())
    try:
        return template.format(**parameters)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{option} {template!r} cannot be formatted: {exc}") from None


def error_message(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_info(error: BaseException) -> dict[str, Any]:
    return {"type": type(error).__name__, "message": str(error), "traceback": formatted_traceback(error)}


def formatted_traceback(error: BaseException) -> str | None:
    """The traceback as Python prints it, without ledgerflow's own frames (the user's code is
    what it should show), its newest part when it is very long."""
    if error.__traceback__ is None:
        return None
    summary = traceback.TracebackException.from_exception(error)
    seen: set[int] = set()
    pending = [summary]
    while pending:  # the error, and the ones it was raised from or during
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        theirs = [frame for frame in current.stack if not frame.filename.startswith(_OWN_CODE)]
        if theirs:
            current.stack = traceback.StackSummary.from_list(theirs)
        pending.extend(linked for linked in (current.__cause__, current.__context__) if linked is not None)
    text = "".join(summary.format())
    return text if len(text) <= _TRACEBACK_LIMIT else "...\n" + text[-_TRACEBACK_LIMIT:]


def json_safe(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as the event shows them: JSON where possible, a short repr otherwise."""
    try:
        if len(orjson.dumps(parameters)) <= _PARAMETER_LIMIT:
            return parameters
    except TypeError:
        pass
    return {name: _short(value) for name, value in parameters.items()}


def _short(value: Any) -> Any:
    try:
        if len(orjson.dumps(value)) <= 512:
            return value
    except TypeError:
        pass
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
