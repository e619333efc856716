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


FIRST_VISIT = """() => {
  const loading = document.querySelector(".loading");
  return Boolean(document.querySelector("main") && document.querySelector("h1")) && !loading;
}"""


def test_a_first_visit_asks_for_each_read_once_and_takes_every_boot_read(
    console: Any, browser: Any, service_stack: support.Stack
) -> None:
    """js/boot.js sends a page's first reads before its modules arrive; the page must take
    them over (none left over: its table matches the pages) and never ask twice — the
    end-user page above all, where a second passport would be a second end user."""
    base = service_stack.base_url
    access = console.evaluate("() => localStorage.getItem('conduit.console.access_token')")
    refresh = console.evaluate("() => localStorage.getItem('conduit.console.refresh_token')")
    auth = {"Authorization": f"Bearer {access}"}
    with service_stack.client() as client:
        chat = client.post(
            "/console/api/apps", json={"name": "first visit", "mode": "chat"}, headers=auth
        ).json()["data"]["id"]
        flow = client.post(
            "/console/api/apps", json={"name": "first flow", "mode": "workflow"}, headers=auth
        ).json()["data"]["id"]
        dataset = client.post(
            "/console/api/datasets", json={"name": "first kb"}, headers=auth
        ).json()["data"]["id"]
        code = client.get(f"/console/api/apps/{chat}/site", headers=auth).json()["data"]["code"]
    paths = [
        "/#/apps",
        f"/#/apps/{chat}",
        f"/#/apps/{chat}/debug",
        f"/#/apps/{chat}/logs",
        f"/#/apps/{chat}/keys",
        f"/#/apps/{chat}/site",
        f"/#/apps/{chat}/tasks",
        f"/#/apps/{flow}/workflow",
        "/#/datasets",
        f"/#/datasets/{dataset}",
        "/#/providers",
        "/#/members",
        f"/chat/{code}",
    ]
    for path in paths:
        context = browser.new_context()
        try:
            if path.startswith("/#/"):
                context.add_init_script(
                    f"localStorage.setItem('conduit.console.access_token', {access!r});"
                    f"localStorage.setItem('conduit.console.refresh_token', {refresh!r});"
                )
            asked: list[str] = []
            context.on(
                "request",
                lambda r: (
                    asked.append(r.url.removeprefix(base))
                    if "/api/" in r.url and r.method == "GET"
                    else None
                ),
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}{path}")
            try:
                page.wait_for_function(FIRST_VISIT, timeout=15_000)
            except Exception as error:
                shown = page.evaluate("() => document.body.innerText.slice(0, 300)")
                raise AssertionError(f"{path} did not render: {shown!r} {errors}") from error
            page.wait_for_load_state("networkidle")
            left = page.evaluate("() => globalThis.conduitBoot.pending()")
            twice = sorted({url for url in asked if asked.count(url) > 1})
            assert not errors, f"{path}: {errors}"
            assert not left, f"{path}: boot reads no page took: {left}"
            assert not twice, f"{path}: asked more than once: {twice}"
            if path.startswith("/chat/"):
                assert asked.count("/api/passport") == 1
        finally:
            context.close()


def test_the_console_works_from_the_keyboard_and_signs_out(
    page: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    """Keyboard only: the skip link first, the main navigation by Tab and Enter, a dialog
    opened with Enter, filled by typing, closed with Escape (the focus back where it was);
    then Sign out: the sign-in form, and a reload keeps it signed out."""
    sign_in(page, service_stack.base_url, service_admin)
    # A fresh load (the sign-in form's button, gone, would be where Tab starts from).
    page.reload()
    page.get_by_role("heading", name="Apps", level=1).wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"

    knowledge = page.get_by_role("navigation", name="Main").get_by_role("link", name="Knowledge")
    knowledge.focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Knowledge", level=1).wait_for()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Apps").focus()
    page.keyboard.press("Enter")
    create = page.get_by_role("button", name="Create app")
    create.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Create an app")
    dialog.wait_for()
    assert page.evaluate("() => document.activeElement.closest('dialog') !== null")
    page.keyboard.type("Typed by keys")
    assert dialog.get_by_label("Name").input_value() == "Typed by keys"
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.textContent") == "Create app"
    axe(page, context="apps page after the keyboard")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to Conduit").wait_for()
    assert page.evaluate("() => localStorage.getItem('conduit.console.access_token')") is None
    page.reload()
    page.get_by_role("heading", name="Sign in to Conduit").wait_for()
    assert page.get_by_role("navigation", name="Main").count() == 0
    shot(page, "signed-out")
