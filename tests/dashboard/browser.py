"""Driving Debian's Chromium with Playwright for Python: the browser the tests use, pages that
fail the test on a script error, and where screenshots go.

Playwright never downloads a browser here: it launches `/usr/bin/chromium` (install it with
`apt-get install chromium`; .ci/run does when it is missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("LEDGERFLOW_SCREENSHOTS") or Path(tempfile.gettempdir()) / "ledgerflow-dashboard-screenshots")
"""Where the tests save a screenshot of each page (for people to look at; nothing compares them)."""
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
REPO = Path(__file__).resolve().parents[2]
LEDGERFLOW = str(Path(sys.executable).with_name("ledgerflow"))


class BrowserPage:
    """A page in a fresh browser context that records script errors and failed requests."""

    def __init__(self, browser: Browser, viewport: dict[str, int], color_scheme: str = "light") -> None:
        self.context = browser.new_context(viewport=viewport, color_scheme=color_scheme)  # type: ignore[arg-type]
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def close(self) -> None:
        self.context.close()


@contextmanager
def browser_page(
    browser: Browser, viewport: dict[str, int] = DESKTOP, color_scheme: str = "light", *, expected: str | None = None,
) -> Iterator[Page]:
    """A page whose script errors fail the test when it ends (but those containing `expected`,
    like the browser's own note of a 401 the page answers by asking for a key)."""
    holder = BrowserPage(browser, viewport, color_scheme)
    try:
        yield holder.page
        errors = [error for error in holder.errors if expected is None or expected not in error]
        assert not errors, errors
    finally:
        holder.close()


def unnamed_controls(page: Page) -> list[str]:
    """The visible controls and links that have no accessible name (the start of their HTML)."""
    found: list[str] = page.evaluate("""() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.getAttribute('aria-label') || el.labels?.length || el.textContent.trim() || el.title))
        .map((el) => el.outerHTML.slice(0, 80))""")
    return found


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def execute(run_id: str, home: Path, store_url: str) -> int:
    """Run the requested run as a worker does (`ledgerflow flow-run execute`); its exit code."""
    env = {**os.environ, "LEDGERFLOW_HOME": str(home), "LEDGERFLOW_DATABASE_URL": store_url}
    env.pop("LEDGERFLOW_API_URL", None)
    done = subprocess.run([LEDGERFLOW, "flow-run", "execute", run_id], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    return done.returncode
