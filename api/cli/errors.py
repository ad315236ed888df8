"""What an error escaping a command means to the user: one line and what to do about it.

Typed errors of ledgerflow's packages carry messages written for users; anything else is a
bug, named as one.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from ledgerflow.api.cli.console import describe
from ledgerflow.events import CorruptStore, EventStoreError, InvalidSettings
from ledgerflow.events.deployments import DeploymentError
from ledgerflow.notifications.errors import NotificationError
from ledgerflow.projections.errors import ProjectionError
from ledgerflow.runtime.entrypoints import EntrypointError
from ledgerflow.runtime.replays import ReplayError

__all__ = ["explain"]

_TYPED = (EventStoreError, InvalidSettings, ProjectionError, DeploymentError, NotificationError, ReplayError, EntrypointError)


def explain(exc: BaseException) -> tuple[str, str | None]:
    """(what is wrong, what to do) for an error no command handled itself."""
    if isinstance(exc, CorruptStore):
        return _one_line(exc), CorruptStore.hint
    if isinstance(exc, _TYPED):
        return _one_line(exc), None
    if isinstance(exc, ValidationError):
        return describe(exc), None
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply", f"keep JSON under {sys.getrecursionlimit() // 4} levels of nesting"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror, None
    return (
        f"unexpected {type(exc).__name__}: {_one_line(exc)}",
        "this is a bug in ledgerflow: rerun with --debug (or LEDGERFLOW_DEBUG=1) and report the traceback",
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
