"""Errors of the read side.

    ProjectionError
     ├── RunNotFound      (also a LookupError) no such flow run or task run
     └── InvalidQuery     (also a ValueError) an argument a query cannot use
"""

from __future__ import annotations

__all__ = ["InvalidQuery", "ProjectionError", "RunNotFound"]


class ProjectionError(Exception):
    pass


class RunNotFound(ProjectionError, LookupError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class InvalidQuery(ProjectionError, ValueError):
    pass
