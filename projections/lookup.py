"""Naming a run the way people do: by its id, a unique prefix of its id, or its run name
(`etl-47af7173`, as the console prints it).

Only the read model's runs are searched, so a run is found by prefix or name once the
projections have folded its first event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

from sqlalchemy import ColumnElement, Table, or_, select

from ledgerflow.projections.errors import AmbiguousRun
from ledgerflow.projections.readmodel import ReadModel

__all__ = ["resolve_run"]

_SHOWN = 10


RunKind = Literal["flow_runs", "task_runs"]


def resolve_run(rm: ReadModel, ref: str, kinds: Sequence[RunKind] = ("flow_runs",)) -> str:
    """The id of the run (flow run by default, or of `kinds`, in that order of preference)
    that `ref` names; AmbiguousRun, listing some, when several do. When none does, `ref` as
    given: the log may hold a run the projections have not folded yet, and the query that
    takes the id says whether it exists.

    Ids are UUIDv7, whose first characters are a time: runs created within a minute share an
    8-character prefix, so a prefix names a flow run before any of its task runs."""
    ref = ref.strip()
    try:
        return str(UUID(ref))  # a whole id is taken as given: the query that uses it says if it exists
    except ValueError:
        pass
    rm.refresh()
    found: dict[str, str | None] = {}
    with rm.reading("runs") as (conn, tables):
        searched = [tables[kind] for kind in kinds]
        for table in searched:
            if conn.execute(select(table.c.key).where(table.c.key == ref)).first() is not None:
                return ref
        for table in searched:  # the first kind with a match decides: a flow run before its task runs
            rows = conn.execute(select(table.c.key, table.c.run_name).where(_named(table, ref))
                                .order_by(table.c.created.desc()).limit(_SHOWN + 1))
            found.update((row.key, row.run_name) for row in rows)
            if found:
                break
    if not found:
        return ref
    if len(found) == 1:
        return next(iter(found))
    listed = ", ".join(f"{key} ({name or '-'})" for key, name in list(found.items())[:_SHOWN])
    more = " and more" if len(found) > _SHOWN else ""
    raise AmbiguousRun(f"{ref!r} names several runs: {listed}{more}; give more of the id")


def _named(table: Table, ref: str) -> ColumnElement[bool]:
    escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(table.c.key.like(f"{escaped}%", escape="\\"), table.c.run_name == ref)
