"""The dashboard's tests stand on the API's fixtures (TestClients and live servers over each
database) and on one headless Chromium per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.api.conftest import client, make_client, make_server
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS

__all__ = ["browser", "client", "make_client", "make_server"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: while Playwright's sync API is open, its event loop counts as
    # running in this thread, and a later test's asyncio.run() would refuse to start. Pytest
    # ends module fixtures before a test of another module runs (under xdist too).
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (Playwright never downloads a browser here)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
