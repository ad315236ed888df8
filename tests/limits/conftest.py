"""Concurrency-limit tests run flows in-process against a harness on each database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledgerflow.events import EventStore
from ledgerflow.runtime.testing import harness
from tests.api.conftest import client, make_client, make_server

__all__ = ["client", "make_client", "make_server", "runs"]


@pytest.fixture
def runs(store_url: str) -> Iterator[EventStore]:
    with harness(store_url) as store:
        yield store
