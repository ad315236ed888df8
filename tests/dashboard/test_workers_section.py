"""The deployments page's work pools section, over the work pools API (branch `workers`)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.dashboard.browser import DESKTOP, PHONE, browser_page, screenshot

expect.set_options(timeout=60_000)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_work_pools_and_worker_heartbeats_show_on_the_deployments_page(
    browser: Browser, make_server: Callable[..., str], store_url: str,
) -> None:
    base = make_server()
    assert httpx.post(base + "/api/work-pools", json={"name": "gpu", "concurrency_limit": 2}).status_code == 201
    beat = httpx.post(base + "/api/workers/heartbeat", json={"pool": "gpu", "name": "gpu-worker-1", "interval_seconds": 30})
    assert beat.status_code == 204, beat.text
    with browser_page(browser, DESKTOP) as page:
        page.goto(base + "/deployments")
        pool = page.locator('#workers tr[data-pool="gpu"]')
        expect(pool).to_contain_text("Ready")
        expect(pool.locator("td").nth(2)).to_have_text("2")
        worker = page.locator('#workers tr[data-worker="gpu-worker-1"]')
        expect(worker).to_have_attribute("data-status", "online")
        expect(worker.locator(".heartbeat")).to_contain_text("s ago")
        expect(page.locator("#workers-empty")).to_be_hidden()
        screenshot(page, "deployments-workers-light-desktop")
    with browser_page(browser, PHONE, "dark") as page:
        page.goto(base + "/deployments")
        expect(page.locator('#workers tr[data-worker="gpu-worker-1"]')).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 1
        screenshot(page, "deployments-workers-dark-phone")
