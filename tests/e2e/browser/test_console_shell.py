"""The console shell in Chromium: signed out → the sign-in form; a wrong password is said in
words; signing in lands on the apps; the shell's assets are served with revalidation."""

from __future__ import annotations

from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot, sign_in
from tests.e2e.conftest import Admin


def test_sign_in_page_states_a_wrong_password_then_signs_in(
    page: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    page.goto(f"{service_stack.base_url}/")
    page.get_by_role("heading", name="Sign in to Conduit").wait_for()
    axe(page)
    shot(page, "signin")
    page.get_by_label("Email").fill(service_admin.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "password" in alert.inner_text().lower()
    sign_in(page, service_stack.base_url, service_admin)
    assert page.url.endswith("#/apps")


def test_shell_assets_are_revalidated(service_stack: support.Stack) -> None:
    with service_stack.client() as client:
        index = client.get("/")
        script = client.get("/ui/js/app.js")
        missing = client.get("/ui/js/nope.js")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache" and script.headers.get("etag")
    assert missing.status_code == 404
