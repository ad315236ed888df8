"""The live fold: a set of projections kept up to date by one durable consumer.

A runner's projections are folded by one `TransactionalConsumer` (events/consumer.py): the log
is read once for all of them, and each batch is folded into their tables inside the
transaction that moves the consumer's checkpoint. A crash leaves either all of a batch applied
or none of it, and two processes never apply one batch twice: the checkpoint's
compare-and-swap is the transaction's first write, and the loser finds it moved and reads on
from there.

Each projection also keeps its own `cursor` (projection_checkpoints): how far its tables
reflect the log. A rebuild moves one projection ahead of the others, and runners over
different sets of projections may share a projection, so a batch is folded into a projection
only past its own cursor, which then moves with the batch. The consumer's checkpoint is where
the set reads on from; it never passes the least of its projections' cursors, and
`sync_checkpoint` brings it up to that when a rebuild (or a database from before consumers
existed) left it behind.

The projection rows are locked (`SELECT ... FOR UPDATE`) after the checkpoint: a rebuild's swap
holds them, so the fold waits for the swap and then writes into the generation it swapped in.
The swap never takes the checkpoint row, so the two cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Engine, select

from ledgerflow.events import Cursor
from ledgerflow.events import checkpoints as consumer_checkpoints
from ledgerflow.events.consumer import Batch
from ledgerflow.events.transactions import write_transaction
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.projections.base import Projection
from ledgerflow.projections.catalog import checkpoint_of, checkpoints, tables_for
from ledgerflow.projections.folding import apply_events, foldable

__all__ = ["LiveFold", "consumer_name", "sync_checkpoint"]


def consumer_name(names: Iterable[str]) -> str:
    """The durable consumer of a set of projections: one checkpoint per set."""
    return "projections:" + ",".join(sorted(names))


class LiveFold:
    """The transactional handler: folds a batch into every projection of the set that has
    not seen it yet, and moves their cursors past it."""

    def __init__(self, projections: dict[str, Projection]) -> None:
        self.projections = projections
        self._all = {t for p in projections.values() for t in p.types}
        self._patterns = {name: TypePatterns.parse(list(p.types)) for name, p in projections.items()}

    def __call__(self, conn: Connection, batch: Batch) -> None:
        events = foldable(batch.events)
        cursors = [Cursor.parse(event.cursor) for event in events]
        locked = conn.execute(
            select(checkpoints).where(checkpoints.c.name.in_(list(self.projections))).with_for_update()
        )
        behind = []
        for row in locked.all():
            checkpoint = checkpoint_of(row)
            if checkpoint.cursor >= batch.upto:
                continue  # rebuilt past this batch already
            projection = self.projections[checkpoint.name]
            patterns = None if set(projection.types) == self._all else self._patterns[checkpoint.name]
            mine = [
                event
                for event, cursor in zip(events, cursors, strict=True)
                if cursor > checkpoint.cursor and (patterns is None or patterns.matches(event.type))
            ]
            if mine:
                apply_events(conn, projection, tables_for(projection, checkpoint.generation), mine)
            behind.append(checkpoint.name)
        if behind:
            conn.execute(
                checkpoints.update().where(checkpoints.c.name.in_(behind)).values(cursor=str(batch.upto))
            )


def sync_checkpoint(engine: Engine, consumer: str, names: Sequence[str]) -> None:
    """Create the set's consumer checkpoint at the least of its projections' cursors, or move
    it up to there: the log before that holds nothing the set has still to fold."""
    with engine.connect() as conn:
        cursors = conn.execute(select(checkpoints.c.cursor).where(checkpoints.c.name.in_(list(names))))
        least = min((Cursor.parse(cursor) for cursor in cursors.scalars()), default=None)
        stands = consumer_checkpoints.read(conn, consumer)
    if least is None or (stands is not None and stands >= least):
        return
    with write_transaction(engine) as conn:
        stands = consumer_checkpoints.create(conn, consumer, least)
        if stands < least:
            # Losing this compare-and-swap means a fold moved the checkpoint meanwhile: fine.
            consumer_checkpoints.advance(conn, consumer, stands, least)
