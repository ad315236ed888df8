"""Domain errors to HTTP, in one place.

    ConcurrencyConflict -> 409      InvalidEvent, InvalidQuery -> 422
    RunStateConflict    -> 409      (the body of a 409 names stream, expected and actual)
    InvalidCursor       -> 400      RunNotFound               -> 404
    RunNotReplayable    -> 422      DeploymentNotFound        -> 404
    DeploymentError, ScheduleError -> 422
    WorkPoolNotFound    -> 404      WorkPoolExists -> 409      WorkPoolError -> 422
    StoreUnavailable    -> 503      CorruptEvent              -> 500
    ProjectionsBehind   -> 503
    AutomationNotFound, BlockNotFound -> 404    AutomationExists, BlockExists -> 409
    RuleError, BlockError             -> 422    DeliveryError                 -> 502

Every error body is `{"detail": "<one readable line>"}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from ledgerflow.api.http.responses import OrjsonResponse
from ledgerflow.events import (
    ConcurrencyConflict,
    CorruptEvent,
    InvalidCursor,
    InvalidEvent,
    StoreUnavailable,
)
from ledgerflow.events.deployments import DeploymentError, DeploymentNotFound
from ledgerflow.events.runs import RunNotFound, RunStateConflict
from ledgerflow.notifications.errors import (
    AutomationExists,
    AutomationNotFound,
    BlockError,
    BlockExists,
    BlockNotFound,
    DeliveryError,
    RuleError,
    SecretKeyError,
)
from ledgerflow.events.schedules import ScheduleError
from ledgerflow.events.workpools import WorkPoolError, WorkPoolExists, WorkPoolNotFound
from ledgerflow.projections.errors import InvalidQuery, ProjectionsBehind
from ledgerflow.runtime.replays import RunNotReplayable

__all__ = ["install_error_handlers", "validation_message"]

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (InvalidCursor, 400),
    (InvalidEvent, 422),
    (InvalidQuery, 422),
    (RunNotFound, 404),
    (RunNotReplayable, 422),
    (DeploymentNotFound, 404),
    (DeploymentError, 422),
    (WorkPoolNotFound, 404),
    (WorkPoolExists, 409),
    (WorkPoolError, 422),
    (ScheduleError, 422),
    (StoreUnavailable, 503),
    (ProjectionsBehind, 503),
    (CorruptEvent, 500),
    (AutomationNotFound, 404),
    (BlockNotFound, 404),
    (AutomationExists, 409),
    (BlockExists, 409),
    (RuleError, 422),
    (SecretKeyError, 500),
    (BlockError, 422),
    (DeliveryError, 502),
)


def validation_message(errors: Sequence[Mapping[str, Any]]) -> str:
    """`appends.0.events.0.type: Field required; ...` from pydantic's error list."""
    parts = []
    for error in errors[:10]:
        where = tuple(error.get("loc", ()))
        loc = ".".join(str(p) for p in where if p != "body" or len(where) == 1)
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return "; ".join(parts) + more


def _line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def install_error_handlers(app: FastAPI) -> None:
    for kind, status in _STATUS:

        def handler(request: Request, exc: Exception, status: int = status) -> OrjsonResponse:
            return OrjsonResponse({"detail": _line(exc)}, status)

        app.add_exception_handler(kind, handler)

    def conflict(request: Request, exc: Exception) -> OrjsonResponse:
        assert isinstance(exc, ConcurrencyConflict)
        body = {"detail": _line(exc), "stream": exc.stream, "expected": exc.expected, "actual": exc.actual}
        return OrjsonResponse(body, 409)

    app.add_exception_handler(ConcurrencyConflict, conflict)
    app.add_exception_handler(RunStateConflict, lambda request, exc: OrjsonResponse({"detail": _line(exc)}, 409))

    def invalid_request(request: Request, exc: Exception) -> OrjsonResponse:
        assert isinstance(exc, RequestValidationError)
        return OrjsonResponse({"detail": validation_message(exc.errors())}, 422)

    app.add_exception_handler(RequestValidationError, invalid_request)
