"""Rebuilding projections from the whole log, aside, then swapping them in.

A rebuild creates the next generation of each chosen projection's tables next to the live
ones, folds the whole log into them (read once for all of them, by a thread that reads the
next batch while this one is folded; rows are kept in memory and written in bulk, indexes
built after the load), then, holding the projections' checkpoint rows, folds the last events
and swaps: one UPDATE of `generation` per projection, and the old tables dropped. Queries keep
reading the old generation until then (see `guard_tables`), and the live fold waits for the
swap and then writes into the new generation.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import Connection, Engine, select

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.events.cursor import START
from ledgerflow.events.gcpause import cycle_collection_paused
from ledgerflow.events.transactions import write_transaction
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.projections.base import Projection
from ledgerflow.projections.bulk import RowBuffer, create_indexes
from ledgerflow.projections.catalog import checkpoints, create_tables, guard_tables, tables_for
from ledgerflow.projections.folding import apply_events, foldable

__all__ = ["rebuild"]

_CACHE_LIMIT = 1_500_000
"""Rows a rebuild keeps in memory before it writes them out and reads back what it needs."""


def rebuild(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Callable[[int, Cursor], None] | None = None,
) -> int:
    """Build `projections` from the whole log into new tables and swap them in; return the
    number of events read. `progress(read, cursor)` after each batch."""
    with cycle_collection_paused():
        return _rebuild(store, engine, projections, batch_size, progress)


def _rebuild(
    store: EventStore,
    engine: Engine,
    projections: Sequence[Projection],
    batch_size: int,
    progress: Callable[[int, Cursor], None] | None,
) -> int:
    chosen = [projection.name for projection in projections]
    with write_transaction(engine) as conn:
        generations = {}
        for projection in projections:
            row = conn.execute(
                select(checkpoints).where(checkpoints.c.name == projection.name).with_for_update()
            ).one()
            generation = max(row.generation, row.building_generation or 0) + 1
            if row.building_generation:  # left behind by a rebuild that did not finish
                for table in tables_for(projection, row.building_generation).values():
                    table.drop(conn, checkfirst=True)
            # Secondary indexes come after the bulk load: building them once is cheaper
            # than keeping them up to date row by row.
            create_tables(conn, projection, generation, indexes=False)
            conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == projection.name)
                .values(building_generation=generation, building_cursor=str(START))
            )
            generations[projection.name] = generation
    building = [
        (p, tables_for(p, generations[p.name]), TypePatterns.parse(list(p.types)), RowBuffer())
        for p in projections
    ]
    types = sorted({t for p in projections for t in p.types})
    cursor, total = START, 0

    def fold(conn: Connection, batch: Sequence[StoredEvent]) -> None:
        batch = foldable(batch)
        for projection, tables, patterns, buffer in building:
            wants_all = set(projection.types) == set(types)
            events = batch if wants_all else [e for e in batch if patterns.matches(e.type)]
            if events:
                apply_events(conn, projection, tables, events, buffer)

    def flush(*, drop: bool) -> None:
        with write_transaction(engine) as conn:
            for _, tables, _, buffer in building:
                buffer.flush(conn, tables, drop=drop)
            conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name.in_(chosen))
                .values(building_cursor=str(cursor))
            )

    batch: list[StoredEvent] = []
    for batch in _prefetched(store, types, batch_size):
        cursor = Cursor.parse(batch[-1].cursor)
        with engine.connect() as conn:  # reads only, once rows had to be dropped
            fold(conn, batch)
        if sum(buffer.size for *_, buffer in building) > _CACHE_LIMIT:
            flush(drop=True)
        total += len(batch)
        if progress is not None:
            progress(total, cursor)
    flush(drop=False)
    for _, tables, _, _ in building:
        with write_transaction(engine) as conn:
            for table in tables.values():
                create_indexes(conn, table)
    with write_transaction(engine) as conn:
        old = {
            row.name: row
            for row in conn.execute(
                select(checkpoints).where(checkpoints.c.name.in_(chosen)).with_for_update()
            )
        }
        # The live fold is locked out from here on: fold the last events and swap.
        while batch := store.read_all(after=cursor, limit=batch_size, types=types):
            fold(conn, batch)
            cursor = Cursor.parse(batch[-1].cursor)
            total += len(batch)
            if progress is not None:
                progress(total, cursor)
        for _, tables, _, buffer in building:
            buffer.flush(conn, tables)
        for projection in projections:
            guard_tables(conn, projection.name, swap=True)
            previous = old[projection.name]
            conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == projection.name)
                .values(
                    generation=generations[projection.name],
                    version=projection.version,
                    # Never move a checkpoint backwards (the live one may have read
                    # past events of no interest to the rebuilt projections).
                    cursor=str(max(cursor, Cursor.parse(previous.cursor))),
                    building_generation=None,
                    building_cursor=None,
                )
            )
            for table in tables_for(projection, previous.generation).values():
                table.drop(conn, checkfirst=True)
    return total


def _prefetched(store: EventStore, types: list[str], batch_size: int) -> Iterator[list[StoredEvent]]:
    """The whole log in batches, the next one read by a thread while the caller folds this
    one: the database's read time overlaps our fold and write time."""
    pages: queue.Queue[list[StoredEvent] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        cursor: Cursor = START
        try:
            while not stop.is_set():
                page = store.read_all(after=cursor, limit=batch_size, types=types)
                pages.put(page)
                if not page:
                    return
                cursor = Cursor.parse(page[-1].cursor)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            pages.put(exc)

    reader = threading.Thread(target=read, name="ledgerflow-rebuild-reader", daemon=True)
    reader.start()
    try:
        while True:
            page = pages.get()
            if isinstance(page, BaseException):
                raise page
            if not page:
                return
            yield page
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to put, then let it finish
            try:
                pages.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()


