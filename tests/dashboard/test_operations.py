"""The automations and deployments pages end to end: a live server on each database, Debian's
Chromium driven by Playwright.

The automation editor shows the API's refusals next to their field, backtests the rule on the
stored events before it can be saved, saves, edits, disables; a firing of the saved rule (by
the server's automation engine) shows with its action's outcome. The deployments page shows a
deployment's schedules and next runs; its Run button requests a run (a refusal of the
parameters shows in the dialog) that appears on the page. Screenshots of both pages (light and
dark, desktop and phone width) are saved with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from ledgerflow.api.keys import ApiKeys
from ledgerflow.events import open_store
from ledgerflow.projections.runner import engine_of
from testdata.synthetic import SyntheticRun
from tests.api.conftest import wait_until
from tests.dashboard.browser import DESKTOP, PHONE, REPO, browser_page, screenshot, unnamed_controls
from tests.dashboard.test_browser import _background, add_history, label

expect.set_options(timeout=60_000)

TEMPLATE = "{{ flow_run.flow_name }} failed"
DEPLOYMENT = {"name": "hourly", "entrypoint": "tests/deployments/flows.py:double", "working_dir": str(REPO),
              "parameters": {"n": 1}, "schedules": [{"kind": "interval", "interval": 3600}]}


def failures_since(store_url: str, since: datetime) -> int:
    with open_store(store_url) as store:
        return sum(1 for e in store.read_all(limit=100_000, types=["flow-run.Failed"]) if e.occurred >= since)


def fail_a_run(store_url: str, flow: str) -> str:
    run = SyntheticRun(flow, datetime.now(UTC))
    run.state("Running")
    run.state("Failed", error="boom")
    with open_store(store_url) as store:
        store.append_streams([run.append()])
    return run.id


def backtest(page: Page) -> None:
    page.get_by_role("button", name="Backtest").click()


def test_the_automation_editor_shows_refusals_backtests_saves_edits_and_disables(
    browser: Browser, make_server: Callable[..., str], store_url: str,
) -> None:
    base = make_server()
    add_history(store_url)
    failed = failures_since(store_url, datetime.now(UTC) - timedelta(days=7))
    assert failed > 0
    with browser_page(browser, expected="status of 4") as page:
        page.goto(base + "/automations")
        expect(page.locator("#list-empty")).to_be_visible()
        page.get_by_role("button", name="New automation").click()
        save = page.get_by_role("button", name="Save automation")
        page.get_by_label("Name", exact=True).fill("etl-failures")
        events = page.get_by_label("Event types", exact=True)
        events.fill("flow-run.Failed, not a type!")
        page.get_by_label("Block (credentials)").fill("ops-slack")
        text = page.get_by_label("Text (template)")
        text.fill("{{ flow_run.flow_name ")
        backtest(page)
        # The API's refusal, next to each field it names; nothing can be saved.
        expect(page.locator('[data-field="trigger.match.events"] .field-error')).to_contain_text(
            "'not a type!' is not an event type pattern")
        expect(events).to_have_attribute("aria-invalid", "true")
        expect(page.locator('[data-field="actions.0.text"] .field-error')).to_contain_text("template")
        expect(save).to_be_disabled()
        screenshot(page, f"automation-refused-{label(store_url)}", full_page=False)

        events.fill("flow-run.Failed")
        text.fill(TEMPLATE)
        backtest(page)
        expect(page.locator("#backtest-summary")).to_have_text(f"Would have fired {failed} times in the last 7 days.")
        expect(page.locator("#backtest-body tr")).to_have_count(min(failed, 100))
        expect(page.locator("#backtest-body tr").first).to_contain_text("failed")  # the rendered message
        expect(page.locator(".field-error")).to_have_count(0)
        expect(save).to_be_enabled()
        page.get_by_label("Cooldown").fill("5m")  # changed after its backtest: not savable until tested again
        expect(save).to_be_disabled()
        backtest(page)
        expect(save).to_be_enabled()
        screenshot(page, f"automation-backtest-{label(store_url)}")
        save.click()

        card = page.locator('[data-automation="etl-failures"]')
        expect(card).to_be_visible()
        expect(card.locator(".trigger")).to_have_text("every flow-run.Failed; quiet for 5 min 00 s after firing")
        expect(card.locator(".then")).to_have_text("Slack message through ops-slack")
        wait_until(lambda: [(a["name"], a["trigger"]["cooldown"], a["actions"][0]["text"])
                            for a in httpx.get(base + "/api/automations").json()] == [("etl-failures", 300.0, TEMPLATE)])

        # A run that fails now fires the rule; its Slack action fails (no such block) and says so.
        run_id = fail_a_run(store_url, "nightly")
        outcome = card.locator(".firing .outcome")
        expect(outcome).to_have_attribute("data-outcome", "failed")
        expect(outcome).to_have_text("slack: failed")
        expect(card.locator(f'.firing a[href="/runs/{run_id}"]')).to_be_visible()

        # The same name again is refused at the name field.
        page.get_by_role("button", name="New automation").click()
        page.get_by_label("Name", exact=True).fill("etl-failures")
        events.fill("flow-run.Crashed")
        page.get_by_label("Block (credentials)").fill("ops-slack")
        text.fill(TEMPLATE)
        backtest(page)
        save.click()
        expect(page.locator('[data-field="name"] .field-error')).to_contain_text("exists")
        page.get_by_role("button", name="Cancel").click()

        page.get_by_role("button", name="Edit etl-failures").click()
        expect(page.get_by_label("Cooldown")).to_have_value("300")
        page.get_by_label("Flow names").fill("nightly, weekly")
        backtest(page)
        save.click()
        expect(card.locator(".trigger")).to_contain_text("(flow nightly or weekly)")
        page.get_by_role("button", name="Disable etl-failures").click()
        expect(card).to_have_attribute("data-enabled", "false")
        expect(page.get_by_role("button", name="Enable etl-failures")).to_be_visible()
    stored = httpx.get(base + "/api/automations/etl-failures").json()
    assert stored["enabled"] is False and stored["trigger"]["match"]["flow_name"] == ["nightly", "weekly"]
    assert len(httpx.get(base + "/api/automations").json()) == 1


def test_the_deployments_page_shows_next_runs_and_runs_a_deployment(
    browser: Browser, make_server: Callable[..., str], store_url: str,
) -> None:
    base = make_server()
    created = httpx.post(base + "/api/deployments", json=DEPLOYMENT, timeout=120)
    assert created.status_code == 201, created.text
    deployment = created.json()["deployment"]
    with browser_page(browser, expected="status of 422") as page:
        page.goto(base + "/deployments")
        card = page.locator('[data-deployment="double/hourly"]')
        expect(card).to_have_attribute("data-paused", "false")
        expect(card).to_contain_text("every 3600s")
        expect(card.locator(".next-slots li")).to_have_count(5)
        expect(card.locator(".recent-runs")).to_have_count(0)
        expect(page.locator("#workers-empty")).to_have_text("No work pools.")

        page.get_by_role("button", name="Run double/hourly").click()
        dialog = page.locator("#run-dialog")
        expect(dialog).to_be_visible()
        parameters = page.get_by_label("Parameters (a JSON object, over the deployment's own)")
        parameters.fill('{"zzz": 1}')
        page.locator("#run-confirm").click()
        expect(page.locator('#run-form [data-field="parameters"] .field-error')).to_contain_text("takes no parameter 'zzz'")
        expect(parameters).to_have_attribute("aria-invalid", "true")
        screenshot(page, f"deployment-run-refused-{label(store_url)}", full_page=False)
        parameters.fill("{oops")
        page.locator("#run-confirm").click()
        expect(page.locator('#run-form [data-field="parameters"] .field-error')).to_contain_text("not JSON")
        parameters.fill('{"n": 21}')
        page.locator("#run-confirm").click()
        expect(dialog).to_be_hidden()
        link = page.locator("#requested-run")
        expect(link).to_be_visible()
        run_id = link.inner_text()
        expect(card.locator(f'.recent-runs [data-run="{run_id}"] .badge')).to_have_text("Scheduled")
        runs = httpx.get(base + "/api/flow-runs", params={"deployment_id": deployment["id"]}).json()["items"]
        assert [(run["id"], run["parameters"]) for run in runs] == [(run_id, {"n": 21})]

        page.get_by_role("button", name="Pause double/hourly").click()
        expect(card).to_have_attribute("data-paused", "true")
        expect(card.locator(".next")).to_contain_text("Paused: nothing is scheduled.")
        assert httpx.get(f"{base}/api/deployments/{deployment['id']}").json()["paused"] is True
        page.get_by_role("button", name="Resume double/hourly").click()
        expect(card).to_have_attribute("data-paused", "false")
        expect(card.locator(".next-slots li")).to_have_count(5)
        screenshot(page, f"deployments-{label(store_url)}")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_both_pages_render_light_dark_and_at_phone_width_with_named_controls(
    browser: Browser, make_server: Callable[..., str], store_url: str,
) -> None:
    base = make_server()
    assert httpx.post(base + "/api/deployments", json=DEPLOYMENT, timeout=120).status_code == 201
    rule = {"name": "slow-etl", "trigger": {"posture": "proactive", "match": {"events": ["flow-run.Completed"]},
                                             "after": ["flow-run.Running"], "within": "1h"},
            "actions": [{"type": "email", "block": "mail", "to": ["oncall@example.com"]}]}
    assert httpx.post(base + "/api/automations", json=rule).status_code == 201
    pages = {"automations": ("/automations", '[data-automation="slow-etl"]'),
             "deployments": ("/deployments", '[data-deployment="double/hourly"] .next-slots li')}
    for scheme in ("light", "dark"):
        for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            with browser_page(browser, size, scheme) as page:
                for name, (path, shown) in pages.items():
                    page.goto(base + path)
                    expect(page.locator(shown).first).to_be_visible()
                    if name == "automations":
                        page.get_by_role("button", name="New automation").click()
                        expect(page.locator("#actions > li")).to_have_count(1)
                    luminance = _background(page)
                    assert (luminance < 0.2) if scheme == "dark" else (luminance > 0.8), (name, scheme, luminance)
                    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                    assert overflow <= 1, f"{name} at {size_name} width scrolls sideways by {overflow}px"
                    assert unnamed_controls(page) == [], name
                    screenshot(page, f"{name}-{scheme}-{size_name}")


def test_the_key_entered_once_serves_the_new_pages(
    browser: Browser, make_server: Callable[..., str], store_url: str,
) -> None:
    base = make_server(auth=True)
    with open_store(store_url) as store:
        _, secret = ApiKeys(engine_of(store)).create("dashboard", "write")
    headers = {"authorization": f"Bearer {secret}"}
    assert httpx.post(base + "/api/deployments", json=DEPLOYMENT, headers=headers, timeout=120).status_code == 201
    with browser_page(browser, expected="status of 401") as page:
        page.goto(base + "/automations")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", secret)
        page.click('#key-form button[type="submit"]')
        expect(page.locator("#list-empty")).to_be_visible()
        page.get_by_role("button", name="New automation").click()
        page.get_by_label("Name", exact=True).fill("with-key")
        page.get_by_label("Event types", exact=True).fill("flow-run.Failed")
        page.get_by_label("Action", exact=True).select_option("cancel-flow-run")
        backtest(page)
        expect(page.locator("#backtest-summary")).to_have_text("Would not have fired in the last 7 days.")
        page.get_by_role("button", name="Save automation").click()
        expect(page.locator('[data-automation="with-key"] .then')).to_have_text("cancel the run")
        page.get_by_role("link", name="Deployments").click()
        expect(page.locator('[data-deployment="double/hourly"] .next-slots li')).to_have_count(5)
        expect(page.locator("#key-dialog")).to_be_hidden()  # asked once, kept for the session
    wait_until(lambda: [a["name"] for a in httpx.get(base + "/api/automations", headers=headers).json()] == ["with-key"])
