"""Custom API tools in Chromium: the Tools page reads an OpenAPI document (its operations
listed; a broken one refused in the server's words), saves it with its key, lists it beside
the built-in tools; an agent's settings page offers its operations, and the debugger shows
the agent calling the team's service (a real HTTP server) with the key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin
from tests.e2e.test_api_tools import KEY, document
from tests.fakes.http_echo import HttpEcho, http_echo

STACK_ENV = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}  # the test's own service


@pytest.fixture(scope="module")
def service() -> Iterator[HttpEcho]:
    with http_echo() as server:
        yield server


def test_a_custom_tool_is_added_and_an_agent_calls_it(
    console: Any,
    service_stack: support.Stack,
    service_admin: Admin,
    service: HttpEcho,
    upstream: Any,
) -> None:
    upstream.reset()
    page = console
    page.goto(f"{service_stack.base_url}/#/tools")
    page.get_by_role("heading", name="Tools", level=1).wait_for()
    page.get_by_role("button", name="Add a custom tool").click()
    dialog = page.get_by_role("dialog", name="Add a custom tool")
    dialog.get_by_label("Name").fill("Orders")
    broken = document(service.base_url)
    broken.pop("servers")
    dialog.get_by_label("OpenAPI schema").fill(json.dumps(broken))
    dialog.get_by_role("button", name="Read the schema").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "servers[0].url is required" in alert.inner_text()
    dialog.get_by_label("OpenAPI schema").fill(json.dumps(document(service.base_url), indent=1))
    dialog.get_by_role("button", name="Read the schema").click()
    operations = dialog.get_by_test_id("operations")
    operations.wait_for()
    assert "GET /echo/orders/{order_id} get_order" in operations.inner_text()
    dialog.get_by_label("Authentication").select_option("api_key")
    dialog.get_by_label("API key").fill(KEY)
    shot(page, "tools-add")
    dialog.get_by_role("button", name="Add the tool").click()
    page.get_by_text("Added “Orders”.").wait_for()
    table = page.get_by_role("table", name="Custom API tools")
    assert "get_order, create_order, fail_with" in table.inner_text()
    assert "Evaluate Expression" in page.get_by_role("table", name="Built-in tools").inner_text()
    axe(page, context="tools page")
    shot(page, "tools")

    made = service_admin.client.post(
        "/console/api/apps",
        json={"name": "Shop helper", "mode": "agent-chat",
              "model_config": {"pre_prompt": "You help with orders."}},
    )  # fmt: skip
    app_id = made.json()["data"]["id"]
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}")
    section = page.get_by_role("region", name="Agent")
    section.get_by_label("🔧 get_order").check()
    section.get_by_role("button", name="Save agent").click()
    section.get_by_text("Agent saved.").wait_for()
    stored = service_admin.client.get(f"/console/api/apps/{app_id}/model-config").json()
    tool = stored["data"]["agent_mode"]["tools"][0]
    assert (tool["provider_type"], tool["provider_name"], tool["tool_name"]) == (
        "api", "Orders", "get_order",
    )  # fmt: skip

    page.goto(f"{service_stack.base_url}/#/apps/{app_id}/debug")
    page.get_by_role("textbox", name="Message", exact=True).fill('get_order {"order_id": "B-2"}')
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector('[data-testid="answer"][data-latest="true"][data-status="done"]')
    answer = page.locator('[data-testid="answer"][data-latest="true"]')
    call = answer.get_by_test_id("tool-call")
    call.locator("summary").click()
    output = json.loads(call.get_by_test_id("tool-output").inner_text())
    echoed = json.loads(output["get_order"])
    assert echoed["path"] == "/echo/orders/B-2"
    assert echoed["headers"]["authorization"] == f"Bearer {KEY}"
    shot(page, "tools-agent-debugger")

    # Used by the agent: the tool cannot be deleted, said in words.
    page.goto(f"{service_stack.base_url}/#/tools")
    page.get_by_role("button", name="Delete Orders").click()
    dialog = page.get_by_role("dialog", name="Delete this tool?")
    dialog.get_by_role("button", name="Delete the tool").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "The app 'Shop helper' uses 'Orders'" in alert.inner_text()
