"""Browser fixtures: Playwright (from PyPI) driving Debian's Chromium (`/usr/bin/chromium`,
installed by `scripts/install-browser`) against a real `conduit serve` on the fake model
upstream. Screenshots go to `test-artifacts/screenshots/<mode>-<name>.png`; `axe(page)` runs
the vendored axe-core and fails on any serious or critical violation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin

CHROMIUM = Path(os.environ.get("CONDUIT_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = (
    Path(os.environ.get("CONDUIT_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
)
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"

# The browser waits this long for what a test expects to appear (a stream, a page).
TIMEOUT_MS = 15_000
# The browser tests drive the UI, which is the same in both modes; what differs between the
# modes is the server's side, which the API tests check in both. So they run in the embedded
# pass (about five minutes less of CI's distributed pass), unless this asks for both.
ALL_MODES = os.environ.get("CONDUIT_TEST_BROWSER_ALL_MODES") == "1"


@pytest.fixture(autouse=True, scope="module")
def embedded_pass_only() -> None:
    """Skips the module in the distributed pass (before its stack starts: an autouse fixture
    of the module's scope comes first)."""
    if support.MODE == "distributed" and not ALL_MODES:
        pytest.skip("browser tests run in the embedded pass (CONDUIT_TEST_BROWSER_ALL_MODES=1)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module: Playwright's sync API keeps an event loop marked running on
    this thread while it is started (another test's `asyncio.run()` would refuse), and its
    driver and browser are child processes (the sandbox tests want none left): both end with
    the module."""
    if not CHROMIUM.exists():
        support.missing(f"Chromium at {CHROMIUM} (bash scripts/install-browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI and these machines run as root, where Chromium's sandbox refuses.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            # A microphone that plays a test tone, granted without asking (speech to text).
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot, named after the mode and `name`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{support.MODE}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe(page: Any, *, context: str = "") -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await window.axe.run(document, {resultTypes: ["violations"]});
            return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
              .map(v => ({id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
        }"""
    )
    assert not result, f"axe violations {context or page.url}: {result}"


def sign_in(page: Any, base_url: str, admin: Admin) -> None:
    """Through the sign-in form, as a user does."""
    page.goto(f"{base_url}/")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(admin.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main").wait_for()


def resumptions(page: Any) -> list[str | None]:
    """The `Last-Event-ID` of each request the page makes for a run's events (`…/events`),
    in order, as it makes them: how it picked a stream up again."""
    seen: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            seen.append(r.headers.get("last-event-id")) if r.url.endswith("/events") else None
        ),
    )
    return seen


@pytest.fixture
def console(page: Any, service_stack: support.Stack, service_admin: Admin) -> Any:
    """A page signed in to the console of `service_stack` (the fake model upstream) as
    `service_admin`."""
    sign_in(page, service_stack.base_url, service_admin)
    return page
