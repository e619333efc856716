"""An agent-chat app in Chromium: its settings page's Agent panel (the built-in tools chosen,
current_time's time zone, the strategy and rounds, stored as Dify's `agent_mode` has it; a
time zone that does not exist refused in the server's words), the debugger showing the tool
the agent used with its input and output above the streamed answer, and the end-user page
showing the same after a reload (from the message's `agent_thoughts`)."""

from __future__ import annotations

import json
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin
from tests.e2e.test_web_api import site_code


def test_an_agents_tools_are_chosen_and_its_tool_calls_shown(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    client = service_admin.client
    made = client.post(
        "/console/api/apps",
        json={"name": "Maths helper", "mode": "agent-chat",
              "model_config": {"pre_prompt": "You help with sums."}},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    app_id = made.json()["data"]["id"]

    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}")
    section = page.get_by_role("region", name="Agent")
    section.wait_for()
    section.get_by_label("🧮 Evaluate Expression", exact=False).check()
    section.get_by_label("🕒 Current Time", exact=False).check()
    section.get_by_label("Current Time: Timezone").fill("Mars/Olympus")
    section.get_by_role("button", name="Save agent").click()
    alert = section.get_by_role("alert")
    alert.wait_for()
    assert "timezone must be a time zone" in alert.inner_text()
    shot(page, "agent-refused")
    section.get_by_label("Current Time: Timezone").fill("Europe/Paris")
    section.get_by_label("Rounds that may call tools (1–99)").fill("4")
    section.get_by_role("button", name="Save agent").click()
    section.get_by_text("Agent saved.").wait_for()
    axe(page, context="agent settings")
    shot(page, "agent-settings")
    stored = client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]["agent_mode"]
    assert (stored["strategy"], stored["max_iteration"], stored["enabled"]) == (
        "function_call", 4, True,
    )  # fmt: skip
    assert [(t["provider_id"], t["tool_name"]) for t in stored["tools"]] == [
        ("maths", "eval_expression"), ("time", "current_time"),
    ]  # fmt: skip
    assert stored["tools"][1]["tool_parameters"]["timezone"] == "Europe/Paris"
    page.reload()
    section = page.get_by_role("region", name="Agent")
    section.wait_for()
    assert section.get_by_label("Current Time: Timezone").input_value() == "Europe/Paris"
    # Unticked, a tool stays listed, switched off, with its settings.
    section.get_by_label("🕒 Current Time", exact=False).uncheck()
    section.get_by_role("button", name="Save agent").click()
    section.get_by_text("Agent saved.").wait_for()
    stored = client.get(f"/console/api/apps/{app_id}/model-config").json()["data"]["agent_mode"]
    assert [(t["tool_name"], t["enabled"]) for t in stored["tools"]] == [
        ("eval_expression", True), ("current_time", False),
    ]  # fmt: skip
    assert stored["tools"][1]["tool_parameters"]["timezone"] == "Europe/Paris"

    # The debugger: the tool the agent used, then the answer.
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}/debug")
    page.get_by_role("textbox", name="Message", exact=True).fill(
        'What is eval_expression {"expression": "12*12"}?'
    )
    page.get_by_role("button", name="Send").click()
    answer = page.locator('[data-testid="answer"][data-latest="true"]')
    page.wait_for_selector('[data-testid="answer"][data-latest="true"][data-status="done"]')
    assert answer.get_by_test_id("answer-text").inner_text() == (
        "Calling eval_expression.Tool said: 144"
    )
    call = answer.get_by_test_id("tool-call")
    assert call.get_attribute("data-done") == "true"
    assert "Used eval_expression" in call.locator("summary").inner_text()
    call.locator("summary").click()
    assert json.loads(call.get_by_test_id("tool-output").inner_text()) == {"eval_expression": "144"}
    axe(page, context="agent debugger")
    shot(page, "agent-debugger")

    # The app's logs: the conversation's message with the tool it used.
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}/logs")
    row = page.get_by_test_id("conversations").get_by_role("row").filter(has_text="12*12")
    row.get_by_role("button", name="Show").click()
    logged = page.get_by_test_id("logged-message").first
    logged.get_by_test_id("tool-call").locator("summary").click()
    assert '"144"' in logged.get_by_test_id("tool-output").inner_text()
    shot(page, "agent-logs")

    # The end-user page: the same, and again after a reload (from the stored thoughts).
    code = site_code(service_admin, app_id)
    page.goto(f"{service_stack.base_url}/chat/{code}")
    page.get_by_label("Message").fill('eval_expression {"expression": "2**5"} please')
    page.get_by_role("button", name="Send").click()
    page.locator(".turn .answer-text").filter(has_text="Tool said: 32").wait_for()
    page.get_by_test_id("tool-call").first.wait_for()
    page.reload()
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.locator(".conversation-open").first.click()
    page.locator(".turn .answer-text").filter(has_text="Tool said: 32").wait_for()
    call = page.get_by_test_id("tool-call").first
    call.locator("summary").click()
    assert "32" in call.get_by_test_id("tool-output").inner_text()
    axe(page, context="agent web app")
    shot(page, "agent-webapp")
