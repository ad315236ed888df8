"""Shared fixtures: a real SQLite file and a real PostgreSQL for every store test.

PostgreSQL comes from LEDGERFLOW_TEST_POSTGRES_URL when it is set (CI sets it); otherwise a
throwaway server is started with `pgserver`, so a fresh machine runs every test too. Each test
gets its own schema, so tests never see each other's events.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

from ledgerflow.events import EventStore, open_store

BACKENDS = ["sqlite", "postgres"]

# No test asserts timings, and hypothesis's per-example deadline is one: on a loaded machine it
# fails tests whose logic is right.
settings.register_profile("ledgerflow", deadline=None)
settings.load_profile("ledgerflow")


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("LEDGERFLOW_TEST_POSTGRES_URL")
    if url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            pytest.exit(f"LEDGERFLOW_TEST_POSTGRES_URL={url} is not reachable: {exc}", returncode=3)
        yield url
        return
    # Before the import: platformdirs warns (an error here) when it finds no runtime folder.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg")))
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")  # type: ignore[attr-defined]
    yield server.get_uri()


@pytest.fixture
def postgres_schema_url(postgres_server_url: str) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = make_url(postgres_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledgerflow.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def store_factory(store_url: str) -> Iterator[Callable[[], EventStore]]:
    """Opens more stores on the same database (other 'processes' of the same log)."""
    opened: list[EventStore] = []

    def make() -> EventStore:
        opened.append(open_store(store_url))
        return opened[-1]

    yield make
    for each in opened:
        each.close()


_SESSION_STARTED = time.time()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the dashboard's browser tests left their screenshots (for people to look at)."""
    from tests.dashboard.browser import SCREENSHOTS

    if SCREENSHOTS.is_dir() and any(p.stat().st_mtime >= _SESSION_STARTED for p in SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"dashboard screenshots: {SCREENSHOTS}")
