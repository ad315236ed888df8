"""The projection runner: the only code that moves checkpoints.

It reads the log after the projections' checkpoints in batches, has each projection fold the
batch, and writes the changed rows and the new checkpoints in one transaction, so a crash
leaves either all of a batch applied or none of it.

Two processes catching up at once (two CLI queries, a CLI query next to the server) must not
apply a batch twice: the transaction first locks the checkpoint rows (`SELECT ... FOR UPDATE`
on PostgreSQL; on SQLite the write transaction is `BEGIN IMMEDIATE`, which already excludes
other writers) and re-reads them; if another process moved them since the batch was read, it
rolls back and reads again from the new checkpoints.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, Dialect, Engine, Table, select, text
from sqlalchemy.schema import CreateTable

from ledgerflow.events import Cursor, EventStore, StoredEvent
from ledgerflow.events.cursor import START
from ledgerflow.events.migrations import apply_migrations
from ledgerflow.events.payloads import is_wellformed
from ledgerflow.events.sql import SqlEventStore
from ledgerflow.events.typefilter import TypePatterns
from ledgerflow.projections.analytics import AnalyticsProjection
from ledgerflow.projections.base import Projection, Rows
from ledgerflow.projections.catalog import MIGRATIONS, checkpoints, guard_tables, tables_for
from ledgerflow.projections.lineage import LineageProjection
from ledgerflow.projections.run_views import RunsProjection

__all__ = ["DEFAULT_PROJECTIONS", "Checkpoint", "ProjectionRunner", "engine_of"]

_log = logging.getLogger("ledgerflow.projections")

DEFAULT_PROJECTIONS: tuple[Projection, ...] = (
    RunsProjection(),
    LineageProjection(),
    AnalyticsProjection(),
)
_LOAD_CHUNK = 1000
_KEY_ROUNDS = 4
_CACHE_LIMIT = 1_500_000
"""Rows a rebuild keeps in memory before it writes them out and reads back what it needs."""


class Checkpoint(NamedTuple):
    name: str
    generation: int
    version: int
    cursor: Cursor
    building_generation: int | None
    building_cursor: Cursor | None


def engine_of(store: EventStore) -> Engine:
    """The store's engine: projections live in the same database, under the same settings."""
    if not isinstance(store, SqlEventStore):
        raise TypeError(f"projections need a SQL event store, not {type(store).__name__}")
    return store.engine


def _checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        row.name,
        row.generation,
        row.version,
        Cursor.parse(row.cursor),
        row.building_generation,
        Cursor.parse(row.building_cursor) if row.building_cursor else None,
    )


class _UpsertPlan(NamedTuple):
    sql: str
    columns: Sequence[tuple[str, Callable[[Any], Any] | None]]
    arrays: bool


@lru_cache(maxsize=512)
def _upsert_plan(table: Table, dialect: Dialect) -> _UpsertPlan:
    quote = dialect.identifier_preparer.quote
    names = [column.name for column in table.c]
    columns = [(c.name, c.type._cached_bind_processor(dialect)) for c in table.c]
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != "key")
    target = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
    conflict = f" ON CONFLICT ({quote('key')}) DO UPDATE SET {updates}"
    if dialect.name == "postgresql":
        # One statement whatever the row count: each column travels as one array.
        arrays = ", ".join(f"%b::{c.type.compile(dialect)}[]" for c in table.c)
        return _UpsertPlan(f"{target}SELECT * FROM unnest({arrays}){conflict}", columns, True)
    marks = ", ".join("?" for _ in names)
    return _UpsertPlan(f"{target}VALUES ({marks}){conflict}", columns, False)


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert or replace `rows` by key, bypassing SQLAlchemy's per-row statement handling
    (the bind processors still convert each value): the hot path of every rebuild."""
    plan = _upsert_plan(table, conn.dialect)
    if plan.arrays:
        arrays = [
            [convert(row[name]) for row in rows] if convert else [row[name] for row in rows]
            for name, convert in plan.columns
        ]
        # Binary parameters (%b): psycopg's text dump of big arrays, escaping every item,
        # costs more than the database's own work here.
        with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(plan.sql, arrays)
        return
    conn.exec_driver_sql(plan.sql, list(_values(plan, rows)))


def _values(plan: _UpsertPlan, rows: list[dict[str, Any]]) -> Iterable[tuple[Any, ...]]:
    """Each row's values in column order, bind processors applied: column by column, so the
    per-value work is C loops except for the processors themselves."""
    names = [name for name, _ in plan.columns]
    values = map(itemgetter(*names), rows) if len(names) > 1 else ((row[names[0]],) for row in rows)
    converters = [(n, convert) for n, (_, convert) in enumerate(plan.columns) if convert]
    if not converters or not rows:
        return values
    columns = list(zip(*values, strict=True))
    for n, convert in converters:
        columns[n] = tuple(map(convert, columns[n]))
    return zip(*columns, strict=True)


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


def _index(conn: Connection, table: Table) -> None:
    for index in table.indexes:
        index.create(conn)


class _Buffer:
    """A rebuild's rows, kept in memory and written in bulk: the tables being built are
    private to the rebuild, so it never needs to read them back while everything fits."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.dirty: dict[str, set[str]] = {}
        self.size = 0
        self.complete = True
        """True while every row of the tables is here (nothing flushed and dropped yet)."""
        self.written = False
        """Whether any row went to the tables yet (before that, every row is a new one)."""

    def remember(self, changes: Rows) -> None:
        for name, changed in changes.items():
            table = self.rows.setdefault(name, {})
            self.size -= len(table)
            table.update(changed)
            self.size += len(table)
            self.dirty.setdefault(name, set()).update(changed)

    def flush(self, conn: Connection, tables: dict[str, Table], *, drop: bool = False) -> None:
        """Write the changed rows (COPY on PostgreSQL while every row is new); with `drop`,
        forget every row afterwards to bound memory."""
        for name, keys in self.dirty.items():
            if keys:
                rows = [self.rows[name][key] for key in keys]
                if not self.written and conn.dialect.name == "postgresql":
                    _copy(conn, tables[name], rows)
                else:
                    _upsert(conn, tables[name], rows)
        self.dirty.clear()
        self.written = True
        if drop:
            self.rows.clear()
            self.size = 0
            self.complete = False


def _copy(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    plan = _upsert_plan(table, conn.dialect)
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name, _ in plan.columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        # Binary COPY with the columns' types given up front: half the client's time of text.
        types = cur.execute(
            "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            [quote(table.name)],
        ).fetchall()
        with cur.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([oid for (oid,) in types])
            for values in _values(plan, rows):
                copy.write_row(values)


def _apply(
    conn: Connection,
    projection: Projection,
    tables: dict[str, Table],
    events: Sequence[StoredEvent],
    cache: _Buffer | None = None,
) -> None:
    """Fold `events` (well-formed: see `_foldable`) into the projection's `tables` inside the
    caller's transaction, or with a rebuild's `cache`, into the cache (which writes later)."""
    if cache is not None and cache.complete:
        # Every row is in the cache: the fold looks up what it needs there (it never mutates
        # the rows it is given), no key rounds needed.
        cache.remember(projection.fold({name: cache.rows.setdefault(name, {}) for name in tables}, events))
        return
    rows: Rows = {name: {} for name in tables}
    asked: dict[str, set[str]] = {name: set() for name in tables}
    for _ in range(_KEY_ROUNDS):
        wanted = projection.keys(events, rows)
        fresh = {name: keys - asked[name] for name, keys in wanted.items() if keys - asked[name]}
        if not fresh:
            break
        for name, keys in fresh.items():
            asked[name] |= keys
            if cache is not None:
                known = cache.rows.get(name, {})
                rows[name].update((key, known[key]) for key in keys if key in known)
                if cache.complete:
                    continue
                keys = {key for key in keys if key not in known}
            _load(conn, tables[name], keys, rows[name])
    changes = projection.fold(rows, events)
    if cache is not None:
        cache.remember(changes)
        return
    for name, changed in changes.items():
        if changed:
            _upsert(conn, tables[name], list(changed.values()))


def _foldable(events: Sequence[StoredEvent]) -> Sequence[StoredEvent]:
    """The events a projection can fold: a malformed one is skipped with a warning, not fatal."""
    if all(is_wellformed(event) for event in events):
        return events
    kept = []
    for event in events:
        if is_wellformed(event):
            kept.append(event)
        else:
            _log.warning("skipping malformed %s at %s in %s: required fields missing", event.type, event.cursor, event.stream)
    return kept


def _load(conn: Connection, table: Table, keys: Iterable[str], into: dict[str, Any]) -> None:
    keys = list(keys)
    for start in range(0, len(keys), _LOAD_CHUNK):
        chunk = keys[start : start + _LOAD_CHUNK]
        for row in conn.execute(select(table).where(table.c.key.in_(chunk))):
            into[row.key] = dict(row._mapping)


class ProjectionRunner:
    """Keeps `projections` up to date with the log of `store`."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection] = DEFAULT_PROJECTIONS,
        *,
        batch_size: int = 2000,
        rebuild_batch_size: int = 5000,
    ) -> None:
        self.store = store
        self.engine = engine_of(store)
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
        self._types = sorted({t for p in projections for t in p.types})
        self._patterns = {p.name: TypePatterns.parse(list(p.types)) for p in projections}
        self._ready = False

    # -- setup ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the checkpoint table and each projection's tables; rebuild those built by
        another version of their code."""
        if self._ready:
            return
        apply_migrations(self.engine, "projections", MIGRATIONS)
        stale = []
        with self._write() as conn:
            self._serialise(conn)
            known = {row.name: _checkpoint(row) for row in conn.execute(select(checkpoints))}
            for name, projection in self.projections.items():
                checkpoint = known.get(name)
                if checkpoint is None:
                    conn.execute(
                        checkpoints.insert().values(
                            name=name, generation=1, version=projection.version, cursor=str(START)
                        )
                    )
                    self._create(conn, projection, 1)
                elif checkpoint.version != projection.version:
                    stale.append(name)
        self._ready = True
        if stale:
            self.rebuild(stale)

    @staticmethod
    def _serialise(conn: Connection) -> None:
        # Two processes starting on a fresh PostgreSQL database must not both create tables.
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ledgerflow-projections'))"))

    @staticmethod
    def _create(
        conn: Connection, projection: Projection, generation: int, *, indexes: bool = True
    ) -> None:
        for table in tables_for(projection, generation).values():
            table.drop(conn, checkfirst=True)
            conn.execute(CreateTable(table))
            if indexes:
                _index(conn, table)

    def _write(self) -> Any:
        return _Transaction(self.engine)

    def checkpoints(self) -> dict[str, Checkpoint]:
        self.ensure()
        with self.engine.connect() as conn:
            return {
                row.name: _checkpoint(row)
                for row in conn.execute(select(checkpoints))
                if row.name in self.projections
            }

    def tables(self, name: str) -> dict[str, Table]:
        """The live tables of projection `name`."""
        return tables_for(self.projections[name], self.checkpoints()[name].generation)

    # -- catching up ----------------------------------------------------------------------

    def catch_up(self, limit: int | None = None) -> int:
        """Apply everything the log has past the checkpoints (at most about `limit` events);
        return how many events were read."""
        self.ensure()
        total = 0
        current = self.checkpoints()
        while limit is None or total < limit:
            start = min(c.cursor for c in current.values())
            batch, next_after = self.store.read_page(after=start, limit=self.batch_size, types=self._types)
            upto = Cursor.parse(next_after)
            if upto <= start:
                return total
            # Also when the batch is empty: the checkpoints move past the events of other
            # types, which the next read then does not scan again.
            applied = self.apply_batch(batch, current, upto)
            if applied is None:
                current = self.checkpoints()
                continue
            current = applied
            total += len(batch)
            if len(batch) < self.batch_size:
                return total
        return total

    def apply_batch(
        self, batch: Sequence[StoredEvent], seen: dict[str, Checkpoint], upto: Cursor | None = None
    ) -> dict[str, Checkpoint] | None:
        """Apply `batch` (read after the checkpoints `seen`, up to `upto`: its last event
        unless given) in one transaction and return the new checkpoints; None, with nothing
        written, when another process moved one since. A checkpoint never moves backwards."""
        last = upto or Cursor.parse(batch[-1].cursor)
        foldable = _foldable(batch)
        cursors = [Cursor.parse(event.cursor) for event in foldable]
        with self._write() as conn:
            locked = conn.execute(
                select(checkpoints)
                .where(checkpoints.c.name.in_(list(seen)))
                .with_for_update()
            )
            now = {row.name: _checkpoint(row) for row in locked}
            if {n: c[1:4] for n, c in now.items()} != {n: c[1:4] for n, c in seen.items()}:
                conn.rollback()
                return None
            for name, checkpoint in now.items():
                projection = self.projections[name]
                patterns = self._patterns[name]
                wants_all = set(projection.types) == set(self._types)
                events = [
                    event
                    for event, cursor in zip(foldable, cursors, strict=True)
                    if cursor > checkpoint.cursor and (wants_all or patterns.matches(event.type))
                ]
                if events:
                    _apply(conn, projection, tables_for(projection, checkpoint.generation), events)
            moved = {name: checkpoint._replace(cursor=max(last, checkpoint.cursor)) for name, checkpoint in now.items()}
            for cursor in {checkpoint.cursor for checkpoint in moved.values()}:
                names = [name for name, checkpoint in moved.items() if checkpoint.cursor == cursor]
                conn.execute(checkpoints.update().where(checkpoints.c.name.in_(names)).values(cursor=str(cursor)))
        return moved

    def run(self, stop: threading.Event, on_batch: Callable[[int], None] | None = None) -> None:
        """Follow the log (catching up first), applying events as they are appended, until
        `stop` is set; `on_batch(count)` after each batch applied."""
        self.ensure()
        current = self.checkpoints()
        start = min(c.cursor for c in current.values())
        with self.store.subscribe(after=start, types=self._types, batch_size=self.batch_size) as feed:
            while not stop.is_set():
                batch = feed.poll(timeout=0.2)
                behind = min(c.cursor for c in current.values())
                if feed.cursor <= behind:
                    continue
                fresh = [e for e in batch if Cursor.parse(e.cursor) > behind]
                if fresh or not batch:  # nothing new of ours: only move past what the feed skipped
                    applied = self.apply_batch(fresh, current, feed.cursor)
                    if applied is None:
                        self.catch_up()  # another process applied part of it: take the rest from the log
                        applied = self.checkpoints()
                    current = applied
                if on_batch is not None and batch:
                    on_batch(len(batch))

    # -- rebuilding -----------------------------------------------------------------------

    def rebuild(
        self, names: str | Sequence[str] | None = None,
        progress: Callable[[int, Cursor], None] | None = None,
    ) -> int:
        """Build projections `names` (default: all) from the whole log into new tables while
        queries keep reading the live ones, then swap them in; return the number of events
        read. The log is read once for all of them. `progress(read, cursor)` after each batch."""
        with _cycle_collection_paused():
            return self._rebuild(names, progress)

    def _rebuild(
        self, names: str | Sequence[str] | None, progress: Callable[[int, Cursor], None] | None
    ) -> int:
        self.ensure()
        chosen = [names] if isinstance(names, str) else list(names or self.projections)
        projections = [self.projections[name] for name in chosen]
        with self._write() as conn:
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
                self._create(conn, projection, generation, indexes=False)
                conn.execute(
                    checkpoints.update()
                    .where(checkpoints.c.name == projection.name)
                    .values(building_generation=generation, building_cursor=str(START))
                )
                generations[projection.name] = generation
        building = [
            (p, tables_for(p, generations[p.name]), TypePatterns.parse(list(p.types)), _Buffer())
            for p in projections
        ]
        types = sorted({t for p in projections for t in p.types})
        batch_size = self.rebuild_batch_size
        cursor, total = START, 0

        def fold(conn: Connection, batch: Sequence[StoredEvent]) -> None:
            batch = _foldable(batch)
            for projection, tables, patterns, cache in building:
                wants_all = set(projection.types) == set(types)
                events = batch if wants_all else [e for e in batch if patterns.matches(e.type)]
                if events:
                    _apply(conn, projection, tables, events, cache)

        def flush(*, drop: bool) -> None:
            with self._write() as conn:
                for _, tables, _, cache in building:
                    cache.flush(conn, tables, drop=drop)
                conn.execute(
                    checkpoints.update()
                    .where(checkpoints.c.name.in_(chosen))
                    .values(building_cursor=str(cursor))
                )

        for batch in _prefetched(self.store, types, batch_size):
            cursor = Cursor.parse(batch[-1].cursor)
            with self.engine.connect() as conn:  # reads only, once rows had to be dropped
                fold(conn, batch)
            if sum(cache.size for *_, cache in building) > _CACHE_LIMIT:
                flush(drop=True)
            total += len(batch)
            if progress is not None:
                progress(total, cursor)
        flush(drop=False)
        for _, tables, _, _ in building:
            with self._write() as conn:
                for table in tables.values():
                    _index(conn, table)
        with self._write() as conn:
            old = {
                row.name: row
                for row in conn.execute(
                    select(checkpoints).where(checkpoints.c.name.in_(chosen)).with_for_update()
                )
            }
            # The live runner is locked out from here on: fold the last events and swap.
            while batch := self.store.read_all(after=cursor, limit=batch_size, types=types):
                fold(conn, batch)
                cursor = Cursor.parse(batch[-1].cursor)
                total += len(batch)
                if progress is not None:
                    progress(total, cursor)
            for _, tables, _, cache in building:
                cache.flush(conn, tables)
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


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """A rebuild makes millions of short-lived objects (events, rows, value tuples) next to
    the million rows it keeps: the cyclic collector would scan those rows again and again,
    for no cycle (folds make none). It runs again, and collects, when the rebuild ends."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Transaction:
    """A write transaction on its own connection (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> Connection:
        self._conn = self._engine.connect().execution_options(ledgerflow_write=True)
        self._tx = self._conn.begin()
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if self._tx.is_active:
                if kind is None:
                    self._tx.commit()
                else:
                    self._tx.rollback()
        finally:
            self._conn.close()
