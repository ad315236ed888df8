"""Errors of the read side.

    ProjectionError
     ├── RunNotFound      (also events.runs.RunNotFound, a LookupError) no such flow run or task run
     ├── InvalidQuery     (also a ValueError) an argument a query cannot use
     │    └── AmbiguousRun  an id prefix or run name that names several runs
     ├── ProjectionDamaged a projection table is missing or no longer has its columns
     └── ProjectionsBehind the projections did not reach a cursor the caller waited for
"""

from __future__ import annotations

from ledgerflow.events import runs as events_runs

__all__ = [
    "AmbiguousRun", "InvalidQuery", "ProjectionDamaged", "ProjectionError", "ProjectionsBehind", "RunNotFound",
]


class ProjectionError(Exception):
    pass


class RunNotFound(ProjectionError, events_runs.RunNotFound):
    """No flow run or task run of that id in the read model."""


class InvalidQuery(ProjectionError, ValueError):
    pass


class AmbiguousRun(InvalidQuery):
    """An id prefix or run name that names more than one run."""


class ProjectionDamaged(ProjectionError):
    pass


class ProjectionsBehind(ProjectionError):
    """The projections have not reached a cursor in the time a reader gave them."""
