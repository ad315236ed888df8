"""The dashboard end to end: a live server on each database, Debian's Chromium driven by
Playwright, flows executed by `ledgerflow flow-run execute` in other processes.

Screenshots of every page (light and dark, desktop and phone width) are saved under
`tests.dashboard.browser.SCREENSHOTS`; the test run prints the folder. They are for people to
look at: nothing compares them pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
import random

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import NewEvent, open_store
from ledgerflow.events.payloads import LogEmitted, flow_run_stream
from ledgerflow.events.runs import cancel_flow_run, read_flow_run, request_flow_run
from ledgerflow.projections.runner import ProjectionRunner, engine_of
from testdata.synthetic import random_run
from tests.api.conftest import wait_until
from tests.dashboard.browser import DESKTOP, PHONE, REPO, browser_page, execute, screenshot, unnamed_controls
from tests.runtime.replay_flows import executed

expect.set_options(timeout=60_000)


def request(store_url: str, flow: str, entrypoint: str, **parameters: object) -> str:
    with open_store(store_url) as store:
        scheduled = request_flow_run(store, flow_name=flow, entrypoint=entrypoint, working_dir=str(REPO),
                                     parameters=parameters)
    return str(scheduled.data["flow_run_id"])


def label(store_url: str) -> str:
    return "postgres" if store_url.startswith("postgres") else "sqlite"


def add_history(store_url: str, count: int = 120) -> None:
    """Finished runs over the last two days, for the charts and the table to show something."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    with open_store(store_url) as store:
        store.append_streams([
            random_run(rng, now - timedelta(hours=rng.uniform(0.1, 47)), tasks=3).append() for _ in range(count)
        ])


def test_a_run_started_after_the_page_loaded_appears_live(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server()
    with browser_page(browser) as page:
        page.goto(base + "/")
        expect(page.locator("#live-status")).to_have_attribute("data-status", "live")
        page.evaluate("window.__sameDocument = true")
        folder = tmp_path / "work"
        folder.mkdir()
        run_id = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(folder))
        row = page.locator(f'tr[data-run="{run_id}"]')
        expect(row).to_be_visible()
        expect(row.locator(".badge")).to_have_text("Scheduled")
        assert execute(run_id, tmp_path / "home", store_url) == 0
        expect(row.locator(".badge")).to_have_text("Completed")
        expect(row.locator("td.duration")).not_to_have_text("")
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        screenshot(page, f"runs-live-{label(store_url)}")


def test_the_run_page_shows_timeline_and_lineage_and_replays_from_failure(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server(run_runner=True)  # the server's built-in runner executes requested runs
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "fail-7").write_text("")
    original = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(folder))
    with browser_page(browser) as page:
        page.goto(f"{base}/runs/{original}")
        expect(page.locator("#run-badge .badge")).to_have_text("Failed")  # executed by the server, shown live
        timeline = page.locator("#timeline .task-row")
        expect(timeline).to_have_count(7)
        expect(page.locator('#timeline .task-row[data-state="Failed"]')).to_have_count(1)
        expect(page.locator("#timeline .bar")).to_have_count(7)
        expect(page.locator("#lineage .node")).to_have_count(8)  # the flow run and its 7 task runs
        expect(page.locator("#lineage .node.current")).to_have_count(1)
        screenshot(page, f"run-failed-{label(store_url)}")

        (folder / "fail-7").unlink()  # what went wrong is fixed: step 7 passes from now on
        page.click("#replay-button")
        expect(page.locator("#replay-summary")).to_contain_text("6 of 7 task runs would be reused")
        expect(page.locator('#replay-plan tr[data-reuse="true"]')).to_have_count(6)
        screenshot(page, f"run-replay-plan-{label(store_url)}", full_page=False)
        page.click("#replay-confirm")
        link = page.locator("#replay-link")
        expect(link).to_be_visible()
        replay = link.inner_text()
        with open_store(store_url) as store:
            assert read_flow_run(store, replay).created["replay_of"] == original

        link.click()
        expect(page).to_have_url(f"{base}/runs/{replay}")
        expect(page.locator("#run-badge .badge")).to_have_text("Completed")
        expect(page.locator('#timeline .task-row[data-state="Reused"]')).to_have_count(6)
        expect(page.locator('#timeline .task-row[data-state="Completed"]')).to_have_count(4)
        expect(page.locator('#lineage .node[data-reused="true"]')).to_have_count(6)
        expect(page.locator('#lineage path[data-kind="replay"]')).to_have_count(1)
        expect(page.locator('#lineage path[data-kind="cached"]')).to_have_count(6)
        expect(page.locator("#run-summary")).to_contain_text("Replay of")
        screenshot(page, f"run-replayed-{label(store_url)}")
        page.goto(f"{base}/runs/{original}")
        expect(page.locator(f'#run-summary a[href="/runs/{replay}"]')).to_be_visible()  # "Replayed by"
    assert executed(folder)[-4:] == ["step-7", "step-8", "step-9", "step-10"]


def test_cancel_asks_then_cancels_a_waiting_run(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server()
    run_id = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
    with browser_page(browser) as page:
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("#run-badge .badge")).to_have_text("Scheduled")
        expect(page.locator("#replay-button")).to_be_disabled()
        page.click("#cancel-button")
        expect(page.locator("#cancel-dialog")).to_be_visible()
        page.click("#cancel-confirm")
        expect(page.locator("#action-message")).to_contain_text("Cancelled")
        expect(page.locator("#run-badge .badge")).to_have_text("Cancelled")
        expect(page.locator("#cancel-button")).to_be_disabled()
    with open_store(store_url) as store:
        history = read_flow_run(store, run_id)
    assert history.state is not None and history.state.name == "Cancelled"


def _background(page: Page) -> float:
    """The luminance (0-1) of the page's background colour."""
    rgb = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(part) for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_page_renders_light_dark_and_at_phone_width(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server()
    add_history(store_url)
    folder = tmp_path / "work"
    folder.mkdir()
    run_id = request(store_url, "showcase", "tests.dashboard.flows:showcase", folder=str(folder))
    assert execute(run_id, tmp_path / "home", store_url) == 0
    pages = {"runs": "/", "run": f"/runs/{run_id}", "analytics": "/analytics", "events": "/events"}
    for scheme in ("light", "dark"):
        for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            with browser_page(browser, size, scheme) as page:
                for name, path in pages.items():
                    page.goto(base + path)
                    ready(page, name)
                    luminance = _background(page)
                    assert (luminance < 0.2) if scheme == "dark" else (luminance > 0.8), (name, scheme, luminance)
                    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                    assert overflow <= 1, f"{name} at {size_name} width scrolls sideways by {overflow}px"
                    assert unnamed_controls(page) == [], name  # every control has an accessible name
                    screenshot(page, f"{name}-{scheme}-{size_name}", full_page=name != "events")

    with browser_page(browser) as page:
        page.goto(f"{base}/runs/{run_id}")
        ready(page, "run")
        # The retried task shows both attempts; logs of each level; artifacts rendered safely.
        extract = page.locator('#timeline .task-row[aria-label^="extract"]')
        expect(extract.locator(".bar")).to_have_count(2)
        expect(extract).to_have_attribute("aria-label", "extract-0: Completed, " + extract.get_attribute("aria-label").split(", ", 1)[1])  # type: ignore[union-attr]
        expect(page.locator("#logs-body tr")).not_to_have_count(0)
        expect(page.locator("#logs-body tr.level-20")).not_to_have_count(0)
        page.select_option("#log-level", "30")
        expect(page.locator("#logs-body")).to_contain_text("one row looked odd")
        expect(page.locator("#logs-body tr.level-20")).to_have_count(0)
        expect(page.locator("#logs-body tr.level-10")).to_have_count(0)
        markdown = page.locator('.artifact[data-type="markdown"]')
        expect(markdown.locator("table td")).to_have_count(4)
        expect(markdown.locator('a[href="https://example.com/docs"]')).to_have_count(1)
        expect(markdown.locator('a[href^="javascript"]')).to_have_count(0)
        expect(markdown.locator("img")).to_have_count(0)
        expect(page.locator('.artifact[data-type="table"] tbody tr')).to_have_count(2)
        expect(page.locator('.artifact[data-type="link"] a')).to_have_attribute("href", "https://example.com/dashboards/1")
        expect(page.locator('.artifact[data-type="progress"] progress')).to_have_attribute("value", "100")
        expect(page.locator('#lineage path[data-kind="subflow"]')).not_to_have_count(0)
        expect(page.locator('#lineage path[data-kind="upstream"]')).to_have_count(2)  # extract -> transform -> publish
        assert page.evaluate("window.__xss") is None
        # The theme toggle wins over the system preference, and is kept.
        toggle = page.locator("#theme-toggle")
        expect(toggle).to_have_attribute("aria-label", "Switch to dark theme")
        toggle.click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        page.reload()
        ready(page, "run")
        assert _background(page) < 0.2


def ready(page: Page, name: str) -> None:
    """Wait until the page's script has shown its data."""
    if name == "runs":
        expect(page.locator("#runs-body tr").first).to_be_visible()
        expect(page.locator("#history-chart canvas")).to_have_count(1)
    elif name == "run":
        expect(page.locator("#timeline .task-row").first).to_be_visible()
        expect(page.locator("#lineage svg")).to_have_count(1)
        expect(page.locator(".artifact").first).to_be_visible()
    elif name == "analytics":
        expect(page.locator("#groups-body tr").first).to_be_visible()
        expect(page.locator("#rate-chart canvas")).to_have_count(1)
    elif name == "events":
        expect(page.locator("#events-body tr").first).to_be_visible()
        expect(page.locator("#histogram canvas")).to_have_count(1)


def test_with_keys_on_the_page_asks_once_and_sends_the_key(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server(auth=True)
    with open_store(store_url) as store:
        _, secret = ApiKeys(engine_of(store)).create("dashboard", "write")
    first = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))

    def listed() -> bool:
        reply = httpx.get(base + "/api/flow-runs", headers={"authorization": f"Bearer {secret}"})
        return any(run["id"] == first for run in reply.json()["items"])

    wait_until(listed)
    with browser_page(browser, expected="status of 401") as page:
        page.goto(base + "/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.fill("#key-input", "lf_wrong")
        page.click('#key-form button[type="submit"]')
        expect(page.locator("#key-error")).to_contain_text("unknown or revoked")  # asked again
        page.fill("#key-input", secret)
        page.click('#key-form button[type="submit"]')
        expect(dialog).to_be_hidden()
        expect(page.locator(f'tr[data-run="{first}"]')).to_be_visible()
        expect(page.locator("#live-status")).to_have_attribute("data-status", "live")
        second = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
        expect(page.locator(f'tr[data-run="{second}"]')).to_be_visible()  # the feed, with the key
        page.goto(base + "/analytics")
        expect(page.locator("#a-dimension")).to_be_visible()
        page.goto(f"{base}/runs/{second}")
        expect(page.locator("#run-badge .badge")).to_have_text("Scheduled")
        expect(dialog).to_be_hidden()  # kept for the session: asked once
        assert page.evaluate("sessionStorage.getItem('ledgerflow.apiKey')") == secret
        screenshot(page, f"run-with-key-{label(store_url)}")


def test_the_run_page_shows_a_change_the_projections_fold_after_the_feed_delivered_it(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server(run_projections=False)  # the test folds the log into the projections itself, late
    run_id = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
    with browser_page(browser) as page, open_store(store_url) as store:
        projections = ProjectionRunner(store)
        projections.catch_up()
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("#run-badge .badge")).to_have_text("Scheduled")
        expect(page.locator("#live-status")).to_have_attribute("data-status", "live")
        with page.expect_request(lambda request: "wait_for_cursor" in request.url and "/logs" not in request.url):
            cancel_flow_run(store, run_id, "not today")  # the feed has it; the projections not yet
        projections.catch_up()
        expect(page.locator("#run-badge .badge")).to_have_text("Cancelled")


def _log(run_id: str, message: str, level: int) -> NewEvent:
    return NewEvent(type="log.emitted", data=LogEmitted(
        flow_run_id=run_id, level=level, level_name={20: "INFO", 30: "WARNING"}[level], logger="flow", message=message,
    ).as_data())


def test_logs_and_events_arrive_live_through_their_filters(
    browser: Browser, make_server: Callable[..., str], store_url: str, tmp_path: Path,
) -> None:
    base = make_server()
    run_id = request(store_url, "ten_steps", "tests.runtime.replay_flows:ten_steps", folder=str(tmp_path))
    stream = flow_run_stream(run_id)
    with browser_page(browser) as page, open_store(store_url) as store:
        held: list[Route] = []  # the page's first read of the logs, answered only after a newer one
        page.route(lambda url: "/logs?" in url and "min_level=0" in url and not held, lambda route: held.append(route))
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("#run-badge .badge")).to_have_text("Scheduled")
        expect(page.locator("#live-status")).to_have_attribute("data-status", "live")
        while not held:  # route handlers run while Playwright is called
            page.wait_for_timeout(20)
        page.select_option("#log-level", "30")
        store.append(stream, [_log(run_id, "quiet detail", 20), _log(run_id, "disk almost full", 30)])
        expect(page.locator("#logs-body")).to_contain_text("disk almost full")
        with page.expect_response(lambda response: "min_level=0" in response.url) as answer:
            held[0].continue_()  # the read for "All" answers last: the table keeps to the level chosen since
        answer.value.finished()
        page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 100))")  # the page has read it
        expect(page.locator("#logs-body tr")).to_have_count(1)  # the INFO line stays out
        page.select_option("#log-level", "0")
        expect(page.locator("#logs-body tr")).to_have_count(2)

        page.goto(f"{base}/events?type=log.emitted&flow_run_id={run_id}")
        expect(page.locator("#events-body tr")).to_have_count(2)  # what the run logged so far
        store.append(stream, [_log(run_id, "after the page loaded", 20)])
        store.append("elsewhere-1", [NewEvent(type="log.emitted", data={"message": "another stream"})])
        expect(page.locator("#events-body tr")).to_have_count(3)
        expect(page.locator("#events-body tr").first).to_contain_text("after the page loaded")
        expect(page.locator("#histogram canvas")).to_have_count(1)
        page.click("#pause-button")
        store.append(stream, [_log(run_id, "held while paused", 20)])
        expect(page.locator("#feed-count")).to_contain_text("1 held while paused")
        expect(page.locator("#events-body tr")).to_have_count(3)
        page.click("#pause-button")
        expect(page.locator("#events-body tr")).to_have_count(4)
