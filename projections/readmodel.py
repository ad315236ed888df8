"""`ReadModel`: the store plus the projection tables that queries read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Table, select

from ledgerflow.events import EventStore
from ledgerflow.projections.catalog import checkpoints, guard_tables, tables_for
from ledgerflow.projections.runner import ProjectionRunner

__all__ = ["ReadModel"]


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

    def refresh(self) -> None:
        if self.catch_up:
            self.runner.catch_up()

    @contextmanager
    def reading(self, projection: str) -> Iterator[tuple[Connection, dict[str, Table]]]:
        """A connection and the live tables of `projection`, which a rebuild cannot swap
        out until the connection is done with them."""
        with self.runner.engine.connect() as conn:
            guard_tables(conn, projection, swap=False)
            generation = conn.execute(
                select(checkpoints.c.generation).where(checkpoints.c.name == projection)
            ).scalar_one()
            yield conn, tables_for(self.runner.projections[projection], generation)
