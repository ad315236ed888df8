"""Cursors: opaque strings naming a point in the global order.

The global order is `(tx_id, position)`: on PostgreSQL `tx_id` is the appending transaction's
id (see events/postgres.py for why), on SQLite it is always 0. The string form is
`"<tx_id>.<position>"`; clients must treat it as opaque.
"""

from __future__ import annotations

from typing import NamedTuple

from ledgerflow.events.errors import InvalidCursor

__all__ = ["START", "Cursor"]

_LIMIT = 2**63


class Cursor(NamedTuple):
    tx_id: int
    position: int

    def __str__(self) -> str:
        return f"{self.tx_id}.{self.position}"

    @classmethod
    def parse(cls, value: "str | Cursor | None") -> "Cursor":
        if value is None:
            return START
        if isinstance(value, Cursor):
            return value
        tx, dot, pos = value.partition(".")
        if not (dot and tx.isdigit() and pos.isdigit() and tx.isascii() and pos.isascii()):
            raise InvalidCursor(f"{value!r} is not a cursor; use one a read or the feed returned")
        cursor = cls(int(tx), int(pos))
        if cursor.tx_id >= _LIMIT or cursor.position >= _LIMIT:
            raise InvalidCursor(f"{value!r} is past any position a store hands out")
        return cursor


START = Cursor(0, 0)
