"""Versioned schema migrations, recorded per component in `schema_versions`.

A migration is an ordered, numbered step; `apply_migrations` runs the ones a database has not
had yet, each in its own transaction, so upgrading keeps every stored event. Components other
than the event log (projections) register their own lists under their own name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from sqlalchemy import Connection, Engine, inspect, select, text

from ledgerflow.events.tables import consumer_checkpoints, events, schema_versions, streams
from ledgerflow.events.transactions import write_connection

__all__ = ["EVENT_LOG_MIGRATIONS", "Migration", "apply_migrations", "current_version"]


class Migration(NamedTuple):
    version: int
    description: str
    upgrade: Callable[[Connection], None]


def current_version(conn: Connection, component: str) -> int:
    row = conn.execute(
        select(schema_versions.c.version).where(schema_versions.c.component == component)
    ).first()
    return row[0] if row else 0


def apply_migrations(
    engine: Engine,
    component: str,
    migrations: Sequence[Migration],
    target: int | None = None,
) -> int:
    """Bring `component` up to `target` (default: the newest); return the version reached."""
    goal = target if target is not None else max(m.version for m in migrations)
    # Most opens find the schema current: say so from a read, without the write transaction that
    # every process opening the database would otherwise queue for (SQLite has one writer).
    reached = _current_if_readable(engine, component)
    if reached is not None and reached >= goal:
        return reached
    with write_connection(engine) as conn:
        with conn.begin():
            _serialise_migrators(conn)
            # Inside the serialised transaction: two processes opening a fresh database at once
            # must not both find the table missing (a lost race is a SQLite "database is locked"
            # or a PostgreSQL duplicate-table error).
            schema_versions.create(conn, checkfirst=True)
            version = current_version(conn, component)
            for migration in sorted(migrations, key=lambda m: m.version):
                if version < migration.version <= goal:
                    migration.upgrade(conn)
                    _record(conn, component, version, migration.version)
                    version = migration.version
    return version


def _current_if_readable(engine: Engine, component: str) -> int | None:
    """The component's version by a plain read; None when the table is not there yet."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(schema_versions.name):
            return None
        return current_version(conn, component)


def _serialise_migrators(conn: Connection) -> None:
    # Two processes opening a fresh PostgreSQL database must not both create the tables.
    # SQLite needs nothing: the write transaction (BEGIN IMMEDIATE) already excludes others.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('ledgerflow-migrations'))"))


def _record(conn: Connection, component: str, old: int, new: int) -> None:
    if old == 0:
        conn.execute(schema_versions.insert().values(component=component, version=new))
    else:
        conn.execute(
            schema_versions.update()
            .where(schema_versions.c.component == component)
            .values(version=new)
        )


_IMMUTABLE_EVENTS = {
    "postgresql": [
        """
        CREATE OR REPLACE FUNCTION ledgerflow_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledgerflow events are immutable: % on % refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """,
        """CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
           FOR EACH ROW EXECUTE FUNCTION ledgerflow_refuse_change()""",
        """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
           FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow_refuse_change()""",
        # tx_id orders the feed (events/postgres.py); recorded is the database's clock.
        "ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint)",
        "ALTER TABLE events ALTER COLUMN recorded SET DEFAULT now()",
    ],
    "sqlite": [
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'ledgerflow events are immutable: UPDATE on events refused'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'ledgerflow events are immutable: DELETE on events refused'); END""",
    ],
}


def _create_log(conn: Connection) -> None:
    events.create(conn)
    streams.create(conn)
    for statement in _IMMUTABLE_EVENTS[conn.dialect.name]:
        conn.execute(text(statement))


def _index_types(conn: Connection) -> None:
    # Filtered feeds (`task-run.*`) walk this index instead of the whole log.
    conn.execute(text("CREATE INDEX events_type_order_idx ON events (type, tx_id, position)"))


def _create_consumer_checkpoints(conn: Connection) -> None:
    consumer_checkpoints.create(conn)


EVENT_LOG_MIGRATIONS = (
    Migration(1, "events and stream heads, immutable", _create_log),
    Migration(2, "index events by type in feed order", _index_types),
    Migration(3, "durable consumers' checkpoints", _create_consumer_checkpoints),
)
