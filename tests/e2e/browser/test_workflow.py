"""The workflow page in Chromium: a DSL imported as a new app (the page moves to it), its
graph drawn with a node list beside it, a draft run whose every node lights up as succeeded
with its time, the outputs, the run in the history with its node executions; a DSL with
parallel branches imported over the draft and run; Stop ends a slow run; a broken DSL's
import error is said in words; the export shows the YAML with a download."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def nodes_succeeded(page: Any, node_ids: list[str]) -> None:
    """Every node of the list shows `succeeded` with a time, on the graph and in the list."""
    for node_id in node_ids:
        item = page.locator(f"ol.node-list li[data-node='{node_id}']")
        item.get_by_text(re.compile(r"succeeded, \d")).wait_for()
        box = page.locator(f".graph .node[data-node='{node_id}']")
        assert re.search(r": succeeded, \d+(\.\d+)? (ms|s)$", box.get_attribute("aria-label"))
        assert "succeeded" in box.get_attribute("class")


def import_dsl(page: Any, text: str, *, into_this: bool = False) -> None:
    page.get_by_role("button", name="Import DSL").click()
    dialog = page.get_by_role("dialog", name="Import DSL")
    dialog.get_by_label("DSL (YAML)").fill(text)
    if into_this:
        dialog.get_by_label("Import as").select_option(index=1)
    dialog.get_by_role("button", name="Import", exact=True).click()


def test_import_graph_run_history_stop_and_export(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    page = console
    upstream.reset()
    made = service_admin.client.post(
        "/console/api/apps", json={"name": "Blank flow", "mode": "workflow"}
    )
    assert made.status_code == 201, made.text
    blank = made.json()["data"]["id"]
    page.goto(f"{service_stack.base_url}/#/apps/{blank}/workflow")
    page.get_by_role("heading", name="Workflow of Blank flow").wait_for()
    page.locator(".graph .node[data-node]").first.wait_for()  # a new app's draft: a start
    axe(page)
    shot(page, "workflow-empty")

    # A broken DSL: the import's error in words.
    import_dsl(page, "app: [this is not closed\nkind: app\n")
    dialog = page.get_by_role("dialog", name="Import DSL")
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "400" in alert.inner_text() and "Bad Request" not in alert.inner_text()
    assert len(alert.inner_text()) > 30, alert.inner_text()
    axe(page)
    shot(page, "workflow-import-error")
    dialog.get_by_role("button", name="Close").click()

    # Start → template → End, imported as a new app: the page moves to it.
    import_dsl(page, (WORKFLOWS / "nodes" / "template_transform.yml").read_text())
    page.get_by_role("heading", name="Workflow of Template transform").wait_for()
    assert blank not in page.url
    for node_id in ("start", "tpl", "end"):
        page.locator(f".graph .node[data-node='{node_id}']").wait_for()
    assert "Letter (template-transform): not run" in page.locator(
        ".graph .node[data-node='tpl']"
    ).get_attribute("aria-label")
    axe(page)
    shot(page, "workflow-graph")

    page.get_by_label("Name (required)").fill("ada")
    page.get_by_label("Meta (required)").fill('{"fruits": ["pear", "fig"], "prices": [1, 2]}')
    page.get_by_role("button", name="Run", exact=True).click()
    nodes_succeeded(page, ["start", "tpl", "end"])
    outputs = page.get_by_label("Outputs")
    outputs.wait_for()
    assert "Hello Ada!" in outputs.inner_text()
    axe(page)
    shot(page, "workflow-run-succeeded")

    # The run in the history, with its node executions.
    history = page.get_by_role("region", name="Run history")
    history.get_by_role("cell", name="succeeded").first.wait_for()
    history.get_by_role("button", name=re.compile("Show nodes of the run")).first.click()
    executions = history.get_by_role("table").nth(1)
    executions.get_by_text("Letter (template-transform)").wait_for()
    assert executions.get_by_role("cell", name="succeeded", exact=True).count() == 3
    shot(page, "workflow-history")

    # Parallel branches, imported over this app's draft.
    import_dsl(page, (WORKFLOWS / "parallel_llm.yml").read_text(), into_this=True)
    page.locator(".graph .node[data-node='llm3']").wait_for()
    page.get_by_role("dialog", name="Import DSL").wait_for(state="hidden")
    page.get_by_label("Topic (required)").fill("lighthouses")
    page.get_by_role("button", name="Run", exact=True).click()
    nodes_succeeded(page, ["start", "llm1", "llm2", "llm3", "join", "end"])
    axe(page)
    shot(page, "workflow-parallel-succeeded")

    # A slow run, stopped.
    upstream.control(pace_ms=150)
    page.get_by_label("Topic (required)").fill(" ".join(f"word{n}" for n in range(40)))
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator(".graph .node.running").first.wait_for()
    page.get_by_role("button", name="Stop").click()
    page.locator(".run-result .status.stopped").wait_for()
    upstream.control(pace_ms=5)
    shot(page, "workflow-stopped")

    # A slow run, the page reloaded while it runs: the page follows the same run again from
    # its first event, its nodes light up to the end, and the history gains one run, not two.
    app_id = page.url.split("/apps/")[1].split("/")[0]
    runs_url = f"/console/api/apps/{app_id}/workflow-runs"
    before = service_admin.client.get(runs_url).json()["data"]
    upstream.control(pace_ms=150)
    page.get_by_label("Topic (required)").fill("tides")
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator(".graph .node.running").first.wait_for()
    page.reload()
    nodes_succeeded(page, ["start", "llm1", "llm2", "llm3", "join", "end"])
    outputs = page.get_by_label("Outputs")
    outputs.wait_for()
    assert "tides" in outputs.inner_text()
    upstream.control(pace_ms=5)
    after = service_admin.client.get(runs_url).json()["data"]
    assert len(after) == len(before) + 1 and after[0]["status"] == "succeeded"
    shot(page, "workflow-resumed")

    # The export: the YAML and a download.
    page.get_by_role("button", name="Export DSL").click()
    exported = page.get_by_role("dialog", name="Export DSL")
    text = exported.get_by_label("DSL (YAML)")
    text.wait_for()
    assert "Parallel LLMs" in text.input_value() or "llm3" in text.input_value()
    assert exported.get_by_role("link", name=re.compile(r"Download .*\.yml")).is_visible()
    axe(page)
    shot(page, "workflow-export")


def test_an_agent_nodes_rounds_show_as_they_run(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    """A workflow with an agent node: its tool call shows (used, input, answer) beside the
    nodes lighting up, then the outputs."""
    page = console
    upstream.reset()
    made = service_admin.client.post(
        "/console/api/apps", json={"name": "Agent flow", "mode": "workflow"}
    )
    app_id = made.json()["data"]["id"]
    page.goto(f"{service_stack.base_url}/#/apps/{app_id}/workflow")
    page.get_by_role("heading", name="Workflow of Agent flow").wait_for()
    import_dsl(page, (WORKFLOWS / "nodes" / "agent.yml").read_text(), into_this=True)
    page.locator(".graph .node[data-node='agent']").wait_for()
    page.get_by_role("dialog", name="Import DSL").wait_for(state="hidden")
    page.get_by_label("Name (required)").fill("Ada")
    page.get_by_label("Question (required)").fill(
        'Please compute eval_expression {"expression": "6*7 + 2**3"}'
    )
    page.get_by_role("button", name="Run", exact=True).click()
    nodes_succeeded(page, ["start", "agent", "end"])
    call = page.locator(".run-result").get_by_test_id("tool-call")
    call.wait_for()
    assert call.get_attribute("data-done") == "true"
    assert "Used eval_expression" in call.locator("summary").inner_text()
    call.locator("summary").click()
    assert '"50"' in call.get_by_test_id("tool-output").inner_text()
    outputs = page.get_by_label("Outputs")
    outputs.wait_for()
    assert "Calling eval_expression.Tool said: 50" in outputs.inner_text()
    axe(page, context="workflow agent node")
    shot(page, "workflow-agent")
    service_admin.client.delete(f"/console/api/apps/{app_id}")
