"""`ReadModel`: the store plus the projection tables that queries read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Table, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from ledgerflow.events import Cursor, EventStore
from ledgerflow.events.cursor import START
from ledgerflow.projections.catalog import checkpoints, guard_tables, tables_for
from ledgerflow.projections.errors import ProjectionDamaged
from ledgerflow.projections.runner import ProjectionRunner

__all__ = ["OWN_WRITES_WAIT", "ReadModel"]

OWN_WRITES_WAIT = 10.0
"""Seconds a catching-up read model waits to see what its own process appended."""
_WAIT_STEP = 0.02


class ReadModel:
    """Opened over a store; with `catch_up=True` every query first applies the log's news
    (the embedded case). A server that runs the projections itself passes `catch_up=False`."""

    def __init__(
        self, store: EventStore, *, catch_up: bool = True, runner: ProjectionRunner | None = None
    ) -> None:
        self.store = store
        self.catch_up = catch_up
        self.runner = runner or ProjectionRunner(store)
        self.runner.ensure()
        self._reflected = START

    def refresh(self) -> None:
        """Apply the log's news, up to at least what this process appended through the store:
        on PostgreSQL a reader sees a commit once no older transaction in the cluster is open,
        so a first catch-up may stop short of the process's own writes."""
        if self.catch_up:
            with _damage_named():
                self.runner.catch_up()
                self._reach_own_writes()

    def reflects(self, cursor: Cursor) -> bool:
        """Whether every projection's tables reflect the log up to `cursor`."""
        self.refresh()
        return self._checkpoints_at(cursor)

    def _checkpoints_at(self, cursor: Cursor) -> bool:
        return all(checkpoint.cursor >= cursor for checkpoint in self.runner.checkpoints().values())

    def _reach_own_writes(self) -> None:
        written = self.store.last_written
        if written is None or written <= self._reflected:
            return
        deadline = time.monotonic() + OWN_WRITES_WAIT
        while not self._checkpoints_at(written) and time.monotonic() < deadline:
            time.sleep(_WAIT_STEP)
            self.runner.catch_up()
        self._reflected = written  # waited for once: a transaction held open for long costs one wait, not one per query

    @contextmanager
    def reading(self, projection: str) -> Iterator[tuple[Connection, dict[str, Table]]]:
        """A connection and the live tables of `projection`, which a rebuild cannot swap
        out until the connection is done with them."""
        with _damage_named(), self.runner.engine.connect() as conn:
            guard_tables(conn, projection, swap=False)
            generation = conn.execute(
                select(checkpoints.c.generation).where(checkpoints.c.name == projection)
            ).scalar_one()
            yield conn, tables_for(self.runner.projections[projection], generation)


_MISSING = ("no such table", "no such column", "has no column")
_PG_MISSING = ("42P01", "42703")  # undefined_table, undefined_column


@contextmanager
def _damage_named() -> Iterator[None]:
    """A projection table dropped or altered by hand: a one-line error that names the cure."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _PG_MISSING or any(m in str(orig) for m in _MISSING):
            first = str(orig).splitlines()[0]
            raise ProjectionDamaged(f"the projection tables are damaged ({first}); run `ledgerflow projections rebuild`") from exc
        raise
