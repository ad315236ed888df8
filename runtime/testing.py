"""Test support: run flows against a throwaway store, like Prefect's test harness.

    from ledgerflow.runtime.testing import harness
    with harness() as store:
        my_flow()
        assert store.read_all(types=["flow-run.Completed"])

Or as a pytest fixture: `from ledgerflow.runtime.testing import ledgerflow_harness` in a conftest.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledgerflow.events import EventStore
from ledgerflow.runtime import config

__all__ = ["harness", "ledgerflow_harness"]


@contextmanager
def harness(store_url: str | None = None) -> Iterator[EventStore]:
    """Point this process's runs at a temporary home (and SQLite store unless `store_url`)."""
    with tempfile.TemporaryDirectory(prefix="ledgerflow-test-") as folder:
        home = Path(folder)
        runtime = config.for_home(home, store_url or f"sqlite:///{home / 'ledgerflow.db'}")
        previous = config.install(runtime)
        try:
            assert runtime.store is not None
            yield runtime.store
        finally:
            config.install(previous)
            runtime.close()


try:
    import pytest
except ImportError:  # the harness works without pytest; only the fixture needs it
    pass
else:

    @pytest.fixture
    def ledgerflow_harness() -> Iterator[EventStore]:
        with harness() as store:
            yield store
