"""Helpers the benchmarks share: throwaway databases and figure formatting."""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

__all__ = ["percentile", "postgres_server_url", "rate", "temp_postgres_url", "temp_sqlite_url"]


def postgres_server_url() -> str:
    return os.environ.get(
        "LEDGERFLOW_BENCH_POSTGRES_URL",
        os.environ.get("LEDGERFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )


@contextmanager
def temp_postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    server = postgres_server_url()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def temp_sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/bench.db"


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if len(values) > 1 else values[0]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f}/s"
