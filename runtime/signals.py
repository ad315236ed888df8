"""Exceptions of the runtime: what flow code raises to end a run a particular way, and what a
run's result raises (named as in Prefect, so `except` clauses carry over).

    Abort, Fail, Pause                 raised by flow or task code to end its run that way
    ParameterValidationError           a flow called with parameters its signature refuses
    ReservedArgumentError              a task or flow declares a parameter the engine owns
    MappingLengthMismatch,
    MappingMissingIterable             bad `.map()` calls
    UpstreamTaskError                  why a task run did not start (an upstream did not complete)
    FailedRun, CrashedRun, CancelledRun,
    PausedRun, UnfinishedRun           raised by `.result()` of a run that has no value
"""

from __future__ import annotations

__all__ = [
    "Abort",
    "CancelledRun",
    "CrashedRun",
    "Fail",
    "FailedRun",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "ParameterValidationError",
    "Pause",
    "PausedRun",
    "ReservedArgumentError",
    "UnfinishedRun",
    "UpstreamTaskError",
]


class Abort(Exception):
    """Fail the run now, without retries."""


class Fail(Exception):
    """Fail the run with this message (retries still apply)."""


class Pause(Exception):
    """Stop the run here in state Paused (not failed, no retries); its caller gets the Paused state
    with `return_state=True`, and this exception from `.result()`."""


class ParameterValidationError(TypeError):
    """A flow was called with parameters that do not match its signature's types."""


class ReservedArgumentError(TypeError):
    """A task or flow declares a parameter whose name the engine uses itself (`wait_for`,
    `return_state`)."""


class MappingLengthMismatch(ValueError):
    """`.map()` got iterables of different lengths."""


class MappingMissingIterable(ValueError):
    """`.map()` got no iterable to map over."""


class UpstreamTaskError(Exception):
    """A task run's input came from a run that did not complete: it was not started."""


class FailedRun(Exception):
    """The result of a failed run that recorded no exception of its own."""


class CrashedRun(Exception):
    """The result of a run that crashed."""


class CancelledRun(Exception):
    """The result of a run that was cancelled."""


class PausedRun(Exception):
    """The result of a paused run: it has none yet."""


class UnfinishedRun(Exception):
    """The result of a run that has not finished (Pending, NotReady, Running, ...)."""
