"""Human-input forms in Chromium: the end-user workflow page shows the form its run paused on
and follows the run once answered; a form's own page (`/form/{token}`, its link) answers a run
started through the Service API, and says so in words once it was answered; the console's
workflow page shows the paused node and answers a draft run's form."""

from __future__ import annotations

from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.browser.test_webapp import site_code
from tests.e2e.conftest import Admin
from tests.e2e.test_human_input import USER, approval_dsl
from tests.e2e.test_workflow_runs import published_app


def test_the_end_user_page_answers_the_form_its_run_waits_on(
    page: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    app = published_app(service_stack, service_admin, approval_dsl())
    code = site_code(service_admin, app.app_id, title="Approvals")
    page.goto(f"{service_stack.base_url}/workflow/{code}")
    page.get_by_role("heading", name="Approvals", level=1).wait_for()
    page.get_by_label("Topic (required)").fill("a new logo")
    page.get_by_role("button", name="Run").click()
    form = page.get_by_role("form", name="Review")
    form.wait_for()
    assert "Please review **a new logo**." in form.inner_text()
    assert form.get_by_label("note").input_value() == "a new logo"  # its default
    page.get_by_role("region", name="Result").locator("h2 .status.paused").wait_for()
    axe(page, context="paused workflow page")
    shot(page, "human-input-webapp-paused")

    # A reload while the run waits: the same run, the same form.
    page.reload()
    form = page.get_by_role("form", name="Review")
    form.wait_for()
    assert form.get_by_label("note").input_value() == "a new logo"

    form.get_by_label("note").fill("looks good")
    form.get_by_label("size").select_option("large")
    form.get_by_role("button", name="Approve").click()
    result = page.get_by_role("region", name="Result")
    result.locator("h2 .status.succeeded").wait_for()
    assert "approved a new logo (large): looks good / prepared a new logo" in result.inner_text()
    assert page.get_by_role("form", name="Review").count() == 0
    axe(page, context="resumed workflow page")
    shot(page, "human-input-webapp-resumed")
    app.client.close()


def test_a_form_s_own_page_answers_it_once(
    page: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    app = published_app(service_stack, service_admin, approval_dsl())
    site_code(service_admin, app.app_id, title="Release approvals")
    paused = app.client.post(
        "/workflows/run", json={"inputs": {"topic": "v2.0"}, "user": USER}
    ).json()
    token = paused["data"]["reasons"][0]["form_token"]
    page.goto(f"{service_stack.base_url}/form/{token}")
    page.get_by_role("heading", name="Release approvals", level=1).wait_for()
    form = page.get_by_role("form", name="Your input is needed")
    assert "Please review **v2.0**." in form.inner_text()
    axe(page, context="form page")
    shot(page, "human-input-form-page")
    form.get_by_role("button", name="Reject").click()
    page.get_by_role("status").get_by_text("Your answer (Reject) was sent").wait_for()
    shot(page, "human-input-form-page-answered")
    run = app.client.get(f"/workflows/run/{paused['workflow_run_id']}")
    support.wait_for(
        lambda: (
            app.client.get(f"/workflows/run/{paused['workflow_run_id']}").json()["status"]
            == "succeeded"
        ),
        timeout=30,
        what="the resumed run",
    )
    assert run.status_code == 200

    page.reload()  # answered: the page says so in the server's words
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "already been submitted" in alert.inner_text()
    axe(page, context="answered form page")
    shot(page, "human-input-form-page-closed")
    app.client.close()


def test_the_console_shows_the_paused_node_and_answers_the_draft_run(
    console: Any, service_stack: support.Stack, service_admin: Admin
) -> None:
    page = console
    app = published_app(service_stack, service_admin, approval_dsl())
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/workflow")
    page.get_by_label("Topic (required)").fill("the console")
    page.get_by_role("button", name="Run", exact=True).click()
    form = page.get_by_role("form", name="Review")
    form.wait_for()
    box = page.locator(".graph .node[data-node='review']")
    assert "waiting for an answer" in (box.get_attribute("aria-label") or "")
    page.locator(".run-result .status.paused").wait_for()
    axe(page, context="paused draft run")
    shot(page, "human-input-console-paused")
    form.get_by_role("button", name="Approve").click()
    page.locator(".run-result .status.succeeded").wait_for()
    outputs = page.get_by_label("Outputs")
    outputs.wait_for()
    assert "approved the console (small)" in outputs.inner_text()
    # The nodes that ran before the pause keep their states; none shows as skipped.
    assert "succeeded" in (
        page.locator(".graph .node[data-node='side']").get_attribute("aria-label") or ""
    )
    shot(page, "human-input-console-resumed")

    # Another run, stopped while it waits.
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("form", name="Review").wait_for()
    page.get_by_role("button", name="Stop").click()
    page.locator(".run-result .status.stopped").wait_for()
    assert page.get_by_role("form", name="Review").count() == 0
    shot(page, "human-input-console-stopped")
    app.client.close()
