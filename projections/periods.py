"""`period_index(column, seconds)`: which period of `seconds` (counted from the Unix epoch, in
UTC) a `UtcDateTime` column falls in, computed by the database so a histogram of 100,000 runs
is one GROUP BY, not 100,000 rows sent to Python.

The column is stored differently per dialect (events/tables.py): integer microseconds on
SQLite, timestamptz on PostgreSQL; each gets its own SQL, like a column variant.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, literal
from sqlalchemy.sql.functions import FunctionElement

from ledgerflow.events.tables import EPOCH

__all__ = ["period_index", "period_start"]


class period_index(FunctionElement[int]):  # noqa: N801  (an SQL function reads like one)
    type = BigInteger()
    name = "period_index"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], seconds: int) -> None:
        super().__init__(column, literal(int(seconds), BigInteger()))


def _parts(element: period_index, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    column, seconds = list(element.clauses)
    return compiler.process(column, **kw), compiler.process(seconds, **kw)


@compiles(period_index, "sqlite")
def _sqlite(element: period_index, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = _parts(element, compiler, **kw)
    return f"(({column}) / (({seconds}) * 1000000))"  # integer division of epoch microseconds


@compiles(period_index, "postgresql")
def _postgresql(element: period_index, compiler: SQLCompiler, **kw: Any) -> str:
    column, seconds = _parts(element, compiler, **kw)
    return f"CAST(floor(extract(epoch FROM {column}) / ({seconds})) AS BIGINT)"


def period_start(index: int, seconds: int) -> datetime:
    """The UTC start of period `index` of `seconds`."""
    return EPOCH + timedelta(seconds=index * seconds)
