"""Exceptions a flow or task raises to end its run a particular way."""

from __future__ import annotations

__all__ = ["Abort", "CancelledRun", "Fail", "ParameterValidationError", "Pause"]


class Abort(Exception):
    """Fail the run now, without retries."""


class Fail(Exception):
    """Fail the run with this message (retries still apply)."""


class Pause(Exception):
    """Stop the run here in state Paused (not failed, no retries); its caller gets the Paused state
    with `return_state=True`, and this exception from `.result()`."""


class ParameterValidationError(TypeError):
    """A flow was called with parameters that do not match its signature's types."""


class CancelledRun(Exception):
    """The result of a run that was cancelled (`state.result()` of a Cancelled state)."""
