"""How run outcomes and inputs are written into events: errors, and parameters kept small."""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["error_info", "error_message", "json_safe", "run_name"]

_PARAMETER_LIMIT = 8_192


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
    trace = "".join(traceback.format_exception(error)[-6:]) if error.__traceback__ else None
    return {"type": type(error).__name__, "message": str(error), "traceback": trace}


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
