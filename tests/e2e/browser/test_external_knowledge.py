"""External knowledge in Chromium, against a real external knowledge service started by the
test: an API added (a wrong key refused in words first), a dataset connected to it, its page
showing where its passages come from, hit testing listing the service's passages, and the API
refused deletion while the dataset uses it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.fakes.external_knowledge import ExternalKnowledgeService, external_knowledge

STACK_ENV = {"CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
KEY = "ek-browser-key-42"
FERRY = "The ferry to the island leaves from pier four at seven every morning."


@pytest.fixture(scope="module")
def service() -> Iterator[ExternalKnowledgeService]:
    with external_knowledge(KEY) as running:
        running.add("harbour", FERRY, title="ferry.md")
        yield running


def test_an_external_knowledge_base_is_added_connected_and_searched(
    console: Any, service_stack: support.Stack, service: ExternalKnowledgeService
) -> None:
    page = console
    page.goto(f"{service_stack.base_url}/#/datasets")
    section = page.get_by_role("region", name="External knowledge APIs")
    section.get_by_text("None yet").wait_for()

    page.get_by_role("button", name="Add external knowledge API").click()
    dialog = page.get_by_role("dialog", name="Add external knowledge API")
    dialog.get_by_label("API name").fill("Harbour service")
    dialog.get_by_label("Endpoint").fill(service.base_url)
    dialog.get_by_label("API key").fill("not-the-key")
    dialog.get_by_role("button", name="Add API").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "Authorization failed" in alert.inner_text()
    dialog.get_by_label("API key").fill(KEY)
    dialog.get_by_role("button", name="Add API").click()
    row = section.get_by_role("row").filter(has_text="Harbour service")
    row.wait_for()
    assert KEY not in row.inner_text() and "…y-42" in row.inner_text()
    axe(page)
    shot(page, "external-apis")

    section.get_by_role("button", name="Connect external knowledge base").click()
    connect = page.get_by_role("dialog", name="Connect external knowledge base")
    connect.get_by_label("External knowledge ID").fill("harbour")
    connect.get_by_label("Dataset name").fill("Harbour (external)")
    axe(page)
    connect.get_by_role("button", name="Connect").click()
    page.get_by_role("heading", name="Harbour (external)", level=1).wait_for()
    source = page.get_by_role("region", name="External knowledge base")
    assert "Harbour service" in source.inner_text() and "harbour" in source.inner_text()

    page.get_by_label("Query").fill("ferry to the island")
    page.get_by_role("button", name="Test retrieval").click()
    first = page.get_by_role("list", name="Retrieved passages").get_by_role("listitem").first
    first.wait_for()
    assert "ferry.md" in first.inner_text() and FERRY in first.inner_text()
    axe(page)
    shot(page, "external-dataset")

    # Back to the list: the API names its dataset and cannot be deleted while it is used.
    page.get_by_role("link", name="← Knowledge").click()
    row = (
        page.get_by_role("region", name="External knowledge APIs")
        .get_by_role("row")
        .filter(has_text="Harbour service")
    )
    row.get_by_text("Harbour (external)").wait_for()
    row.get_by_role("button", name="Delete Harbour service").click()
    refused = page.get_by_role("region", name="External knowledge APIs").get_by_role("alert")
    refused.wait_for()
    assert "is used by 1 dataset" in refused.inner_text()
    shot(page, "external-api-in-use")
