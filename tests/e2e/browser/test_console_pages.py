"""The console's core pages in Chromium against a real `conduit serve` on the fake model
upstream: apps (create, filter by mode, search, copy, delete), an app's settings (the prompt
and model config saved and read back after a reload, the server's validation message), API
keys (the token shown once), the site (link, on/off, a new code), model providers (an endpoint
on the fake upstream tested, a refused one said in words), members and roles, the workspace
switch, and the 401 → sign-in → back path. Each page is screenshotted and axe-checked."""

from __future__ import annotations

import re
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot, sign_in
from tests.e2e.conftest import Admin, create_admin, login


def wait_text(page: Any, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for()


def app_row(page: Any, name: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def create_app(page: Any, name: str, mode: str) -> None:
    page.get_by_role("button", name="Create app").click()
    dialog = page.get_by_role("dialog", name="Create an app")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Mode").select_option(mode)
    dialog.get_by_label("Description").fill(f"{name}, made in the browser")
    dialog.get_by_role("button", name="Create").click()
    page.get_by_role("heading", name=f"{name}: settings").wait_for()


def test_quickstart_admin_builds_an_app_from_list_to_site(
    page: Any, service_stack: support.Stack
) -> None:
    result = service_stack.cli("quickstart")
    assert result.returncode == 0, result.stderr
    printed = re.search(r"admin (\S+) \(password: (\S+)\)", result.stdout)
    assert printed is not None, result.stdout
    email, password = printed.groups()
    assert email == "admin@conduit.local"
    base = service_stack.base_url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    quick = login(service_stack, email, password)  # reads through the API, as checks
    sign_in(page, base, Admin(email, password, "", "", quick.client))

    # --- the list: the quickstart's app, then two made here ---
    page.get_by_role("heading", name="Apps").wait_for()
    app_row(page, "Quickstart chat").wait_for()
    create_app(page, "Harbour bot", "chat")
    page.get_by_role("link", name="← Apps").click()
    app_row(page, "Harbour bot").wait_for()
    create_app(page, "Tide report", "completion")
    page.get_by_role("link", name="← Apps").click()
    app_row(page, "Tide report").wait_for()
    axe(page, context="apps list")
    shot(page, "console-apps")

    page.get_by_label("Mode").select_option("completion")
    page.get_by_role("caption").filter(has_text="1 app").wait_for()
    assert app_row(page, "Tide report").count() == 1
    assert app_row(page, "Harbour bot").count() == 0
    page.get_by_label("Mode").select_option("all")
    page.get_by_label("Search by name").fill("harbour")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("caption").filter(has_text="1 app").wait_for()
    assert app_row(page, "Harbour bot").count() == 1
    assert app_row(page, "Quickstart chat").count() == 0

    page.get_by_role("button", name="Copy Harbour bot").click()
    app_row(page, "Harbour bot (copy)").wait_for()
    page.get_by_role("button", name="Delete Harbour bot (copy)").click()
    confirm = page.get_by_role("dialog", name="Delete “Harbour bot (copy)”?")
    axe(page, context="delete confirm")
    shot(page, "console-apps-delete")
    confirm.get_by_role("button", name="Delete").click()
    wait_text(page, "Deleted “Harbour bot (copy)”.")
    # The list is fetched again after the delete; until it arrives the row may still show.
    app_row(page, "Harbour bot (copy)").wait_for(state="detached")
    listed = quick.client.get("/console/api/apps", params={"name": "Harbour"}).json()["data"]
    assert [a["name"] for a in listed] == ["Harbour bot"]
    app_id = listed[0]["id"]

    # --- settings: the prompt and its features, saved and read back after a reload ---
    app_row(page, "Harbour bot").get_by_role("link", name="Harbour bot").click()
    page.get_by_role("heading", name="Harbour bot: settings").wait_for()
    page.get_by_label("Instructions (pre-prompt)").fill("You answer questions about harbours.")
    page.get_by_label("Opening statement").fill("Ahoy! Ask me about a harbour.")
    for question in ("When is high tide?", "Where can I moor?"):
        page.get_by_role("button", name="Add a question").click()
        page.get_by_role("textbox", name=re.compile(r"^Question \d+$")).last.fill(question)
    page.get_by_label("Remember earlier turns").check()
    page.get_by_label("Window size (turns, 1–100)").fill("500")
    page.get_by_role("button", name="Save model config").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "memory.window.size" in alert.inner_text() and "between 1 and 100" in alert.inner_text()
    page.get_by_label("Window size (turns, 1–100)").fill("6")
    page.get_by_label("Suggest follow-up questions after each answer").check()
    page.get_by_label("Text to speech (answers read aloud)").check()
    page.get_by_label("Voice").fill("nova")
    page.get_by_role("button", name="Save model config").click()
    wait_text(page, "Model config saved.")
    page.get_by_label("App name").fill("Harbour guide")
    page.get_by_role("button", name="Save details").click()
    wait_text(page, "Details saved.")
    page.reload()
    page.get_by_role("heading", name="Harbour guide: settings").wait_for()
    assert page.get_by_label("Instructions (pre-prompt)").input_value() == (
        "You answer questions about harbours."
    )
    assert page.get_by_role("textbox", name="Question 2").input_value() == "Where can I moor?"
    assert page.get_by_label("Window size (turns, 1–100)").input_value() == "6"
    assert page.get_by_label("Suggest follow-up questions after each answer").is_checked()
    stored = quick.client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    assert stored["suggested_questions"] == ["When is high tide?", "Where can I moor?"]
    assert stored["memory"]["window"] == {"enabled": True, "size": 6}
    assert stored["text_to_speech"] == {"enabled": True, "voice": "nova"}
    assert stored["speech_to_text"] == {"enabled": False}
    assert page.get_by_label("Text to speech (answers read aloud)").is_checked()
    axe(page, context="app settings")
    shot(page, "console-app-settings")

    # --- API keys: the token once, masked afterwards ---
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("heading", name="Harbour guide: API keys").wait_for()
    page.get_by_role("button", name="Create a key").click()
    dialog = page.get_by_role("dialog", name="Your new API key")
    token = dialog.get_by_test_id("new-key").inner_text().strip()
    assert token.startswith("app-") and len(token) > 20
    dialog.get_by_role("button", name="Copy the key").click()
    dialog.get_by_text("Copied.").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == token
    axe(page, context="new key dialog")
    shot(page, "console-app-keys-new")
    dialog.get_by_role("button", name="Done").click()
    page.get_by_role("caption").filter(has_text="Keys (masked)").wait_for()
    page.reload()
    page.get_by_role("caption").filter(has_text="Keys (masked)").wait_for()
    assert token not in page.content()
    with service_stack.client(token) as service:
        assert service.get("/v1/parameters").status_code == 200
    axe(page, context="keys")
    shot(page, "console-app-keys")

    # --- 401 mid-session: signed out, signed in again, back on the page ---
    page.evaluate("() => localStorage.clear()")
    page.get_by_role("link", name="Site").click()
    page.get_by_role("heading", name="Sign in to Conduit").wait_for()
    assert f"next=%2Fapps%2F{app_id}%2Fsite" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Harbour guide: site").wait_for()
    assert page.url.endswith(f"#/apps/{app_id}/site")

    # --- the site: link by mode, a new code, off and on, its texts ---
    link = page.get_by_test_id("site-link")
    before = link.inner_text()
    code = quick.client.get(f"/console/api/apps/{app_id}/site").json()["data"]["code"]
    assert before == f"{base}/chat/{code}"
    assert link.get_attribute("target") == "_blank"
    page.get_by_role("button", name="Make a new link").click()
    confirm = page.get_by_role("dialog", name="Make a new link?")
    confirm.get_by_role("button", name="Make a new link").click()
    wait_text(page, "A new link is in place")
    page.wait_for_function(
        "before => document.querySelector('[data-testid=site-link]').textContent !== before",
        arg=before,
    )
    after = link.inner_text()
    new_code = quick.client.get(f"/console/api/apps/{app_id}/site").json()["data"]["code"]
    assert after == f"{base}/chat/{new_code}" and new_code != code

    page.get_by_role("button", name="Turn the site off").click()
    wait_text(page, "The site is off")
    assert quick.client.get(f"/console/api/apps/{app_id}").json()["data"]["enable_site"] is False
    page.get_by_role("button", name="Turn the site on").click()
    wait_text(page, "The site is on")
    assert quick.client.get(f"/console/api/apps/{app_id}").json()["data"]["enable_site"] is True
    # Who may use it: the workspace's members only, then anyone again.
    page.get_by_label("Who may use it").select_option("private_all")
    wait_text(page, "Only the members of this workspace")
    site = quick.client.get(f"/console/api/apps/{app_id}/site").json()["data"]
    assert site["access_mode"] == "private_all"
    page.get_by_label("Who may use it").select_option("public")
    wait_text(page, "Anyone with the link may use the site")
    site = quick.client.get(f"/console/api/apps/{app_id}/site").json()["data"]
    assert site["access_mode"] == "public"

    page.get_by_label("Title").fill("Harbour desk")
    page.get_by_label("Copyright").fill("Harbour Ltd")
    page.get_by_label("Default language (e.g. en-US)").fill("not a language")
    page.get_by_role("button", name="Save texts").click()
    page.get_by_role("alert").filter(has_text="default_language").wait_for()
    page.get_by_label("Default language (e.g. en-US)").fill("en-GB")
    page.get_by_role("button", name="Save texts").click()
    wait_text(page, "Site texts saved.")
    site = quick.client.get(f"/console/api/apps/{app_id}/site").json()["data"]
    assert (site["title"], site["copyright"], site["default_language"]) == (
        "Harbour desk",
        "Harbour Ltd",
        "en-GB",
    )
    axe(page, context="site")
    shot(page, "console-app-site")

    completion = quick.client.get("/console/api/apps", params={"mode": "completion"}).json()
    tide = completion["data"][0]["id"]
    page.goto(f"{base}/#/apps/{tide}/site")
    page.get_by_role("heading", name="Tide report: site").wait_for()
    assert "/completion/" in page.get_by_test_id("site-link").inner_text()
    quick.client.close()


def test_model_providers_on_the_fake_upstream(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    page = console
    page.get_by_role("link", name="Model providers").click()
    page.get_by_role("heading", name="Model providers").wait_for()
    page.get_by_text("No model providers yet").wait_for()

    def add(name: str, models: str, default: bool = False) -> None:
        page.get_by_role("button", name="Add an endpoint").click()
        dialog = page.get_by_role("dialog", name="Add an OpenAI-compatible endpoint")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_label("Base URL").fill(upstream.base_url)
        dialog.get_by_label("API key").fill("sk-fake-browser-0001")
        dialog.get_by_label("Models", exact=True).fill(models)
        if default:
            dialog.get_by_label("Make it the workspace's default").check()
            axe(page, context="provider dialog")
            shot(page, "console-providers-add")
        dialog.get_by_role("button", name="Add provider").click()
        wait_text(page, f"Added “{name}”.")

    add("Fake upstream", "fake-chat, fake-large", default=True)
    add("Refusing upstream", "fake:status-401")
    row = page.get_by_role("row").filter(has_text="Fake upstream")
    assert "sk-fake-browser-0001" not in row.inner_text()  # masked
    row.get_by_role("button", name="Test Fake upstream").click()
    row.get_by_text("Works: fake-chat answered.").wait_for()
    refused = page.get_by_role("row").filter(has_text="Refusing upstream")
    refused.get_by_role("button", name="Test Refusing upstream").click()
    alert = refused.get_by_role("alert")
    alert.wait_for()
    assert "Error 400" in alert.inner_text() and len(alert.inner_text()) > 20
    axe(page, context="providers")
    shot(page, "console-providers")

    refused.get_by_role("button", name="Make default: Refusing upstream").click()
    wait_text(page, "“Refusing upstream” is now the workspace's default.")
    providers = service_admin.client.get("/console/api/workspaces/current/model-providers")
    defaults = [p["name"] for p in providers.json()["data"] if p["is_default"]]
    assert defaults == ["Refusing upstream"]

    row.get_by_role("button", name="Edit Fake upstream").click()
    dialog = page.get_by_role("dialog", name="Edit Fake upstream")
    dialog.get_by_label("Name").fill("Fake upstream (edited)")
    dialog.get_by_role("button", name="Save").click()
    wait_text(page, "Saved “Fake upstream (edited)”.")
    edited = page.get_by_role("row").filter(has_text="Fake upstream (edited)")
    edited.get_by_role("button", name="Test Fake upstream (edited)").click()
    edited.get_by_text("Works: fake-chat answered.").wait_for()  # the kept key still works

    page.get_by_role("row").filter(has_text="Refusing upstream").get_by_role(
        "button", name="Delete Refusing upstream"
    ).click()
    page.get_by_role("dialog", name="Delete this provider?").get_by_role(
        "button", name="Delete the provider"
    ).click()
    wait_text(page, "Deleted “Refusing upstream”.")
    page.get_by_role("row").filter(has_text="Refusing upstream").wait_for(state="detached")

    # An app's settings offer the workspace's providers and their models.
    app = service_admin.client.post("/console/api/apps", json={"name": "Pilot", "mode": "chat"})
    app_id = app.json()["data"]["id"]
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}")
    page.get_by_label("Model provider").select_option(label="Fake upstream (edited)")
    page.get_by_label("Model", exact=True).select_option("fake-large")
    page.get_by_role("button", name="Save model config").click()
    wait_text(page, "Model config saved.")
    model = service_admin.client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]
    assert model["model"]["name"] == "fake-large"
    assert model["model"]["provider"].startswith("workspace:")


def test_members_roles_rename_and_workspace_switch(
    console: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    page = console
    email, password = create_admin(service_stack, workspace="Lighthouse")
    other = login(service_stack, email, password)
    made = other.client.post("/console/api/apps", json={"name": "Lamp log", "mode": "chat"})
    assert made.status_code == 201, made.text

    page.get_by_role("link", name="Members").click()
    page.get_by_role("heading", name="Members").wait_for()
    page.get_by_label("Email of an existing account").fill("nobody@example.com")
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_role("alert").filter(has_text="nobody@example.com").wait_for()
    page.get_by_label("Email of an existing account").fill(email)
    page.get_by_label("Role", exact=True).select_option("editor")
    page.get_by_role("button", name="Add", exact=True).click()
    wait_text(page, f"Added {email} as editor.")
    role = page.get_by_label(f"Role of {email}")
    assert role.input_value() == "editor"
    axe(page, context="members")
    shot(page, "console-members")

    role.select_option("normal")
    wait_text(page, f"{email} is now normal.")
    members = service_admin.client.get("/console/api/workspaces/current/members").json()["data"]
    assert {m["email"]: m["role"] for m in members}[email] == "normal"
    page.get_by_role("button", name=f"Remove {email}").click()
    page.get_by_role("dialog", name="Remove this member?").get_by_role(
        "button", name="Remove"
    ).click()
    wait_text(page, f"Removed {email} from the workspace.")
    page.get_by_label(f"Role of {email}").wait_for(state="detached")

    current = service_admin.client.get("/console/api/workspaces/current").json()["data"]
    page.get_by_label("Workspace name").fill("Acme Harbour")
    page.get_by_role("button", name="Rename").click()
    wait_text(page, "The workspace is now “Acme Harbour”.")
    switcher = page.locator("header.top").get_by_role("combobox")
    switcher.locator("option", has_text="Acme Harbour (owner)").wait_for(state="attached")

    # The other account adds this one to its workspace: the header offers both; switching
    # shows the other workspace's apps, and switching back this one's.
    added = other.client.post(
        "/console/api/workspaces/current/members",
        json={"email": service_admin.email, "role": "editor"},
    )
    assert added.status_code == 201, added.text
    page.reload()
    switcher.locator("option", has_text="Lighthouse (editor)").wait_for(state="attached")
    try:
        lighthouse = other.client.get("/console/api/workspaces/current").json()["data"]["id"]
        switcher.select_option(lighthouse)
        app_row(page, "Lamp log").wait_for()
        assert page.locator("header.top").get_by_role("combobox").input_value() == lighthouse
        axe(page, context="other workspace")
        shot(page, "console-workspace-switched")
    finally:
        back = service_admin.client.post(
            "/console/api/workspaces/switch", json={"tenant_id": current["id"]}
        )
        assert back.status_code == 200, back.text
        other.client.close()
    page.reload()
    page.get_by_role("heading", name="Apps").wait_for()
    page.locator("main .loading").wait_for(state="detached")  # the list has loaded
    assert app_row(page, "Lamp log").count() == 0
