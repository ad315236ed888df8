"""Folds of the event log into query tables: run views, lineage, analytics; the runner that
keeps them up to date; the queries the CLI and the API ask; time travel over a run's stream.

Imports `events` only; never `runtime`, `notifications` or `api`.
"""

from ledgerflow.projections.errors import InvalidQuery, ProjectionError, RunNotFound
from ledgerflow.projections.readmodel import ReadModel
from ledgerflow.projections.runner import DEFAULT_PROJECTIONS, ProjectionRunner

__all__ = [
    "DEFAULT_PROJECTIONS",
    "InvalidQuery",
    "ProjectionError",
    "ProjectionRunner",
    "ReadModel",
    "RunNotFound",
]
