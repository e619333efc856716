"""Annotations in Chromium: an answer annotated from the logs, the app's annotations page (add,
edit, delete, search) and its switch for the annotation reply, after which the annotated
question is answered with the annotation over the Service API; the annotation's hits, an import
from a CSV file and the export to one."""

from __future__ import annotations

import re
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin, service_app


def _annotations_of(app: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = app.client.get("/apps/annotations").json()["data"]
    return data


def test_annotate_from_the_logs_then_turn_the_reply_on(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(service_stack, service_admin, pre_prompt="You are a test assistant.")
    body = {"inputs": {}, "user": "alice", "response_mode": "blocking", "auto_generate_name": False}
    asked = app.client.post("/chat-messages", json={**body, "query": "when do you open"})
    assert asked.status_code == 200, asked.text

    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/logs")
    page.get_by_role("heading", name="Logs of chat app").wait_for()
    page.get_by_test_id("conversations").get_by_role("button", name=re.compile("^Show")).click()
    page.get_by_role("button", name="Annotate the answer to “when do you open”").click()
    dialog = page.get_by_role("dialog", name="Annotate this answer")
    assert dialog.get_by_label("Question").input_value() == "when do you open"
    dialog.get_by_label("Answer").fill("We open at nine.")
    dialog.get_by_role("button", name="Save the annotation").click()
    page.get_by_test_id("logged-annotation").filter(has_text="We open at nine.").wait_for()
    axe(page, context="logs with an annotated answer")
    shot(page, "logs-annotated")
    [made] = _annotations_of(app)
    assert (made["question"], made["answer"]) == ("when do you open", "We open at nine.")

    # The app's annotations page: the one from the logs, then one added here.
    page.get_by_role("navigation", name="App pages").get_by_role("link", name="Annotations").click()
    page.get_by_role("heading", name="Annotations of chat app").wait_for()
    listed = page.get_by_test_id("annotations")
    listed.get_by_role("row").filter(has_text="We open at nine.").wait_for()
    page.get_by_test_id("reply-state").filter(has_text=re.compile("^Off:")).wait_for()
    page.get_by_role("button", name="Add an annotation").click()
    added = page.get_by_role("dialog", name="Add an annotation")
    added.get_by_label("Question").fill("where is the shop")
    added.get_by_label("Answer").fill("At 1 Main Street.")
    added.get_by_role("button", name="Save the annotation").click()
    listed.get_by_role("row").filter(has_text="At 1 Main Street.").wait_for()
    page.get_by_text("2 annotations").wait_for()

    # Edit one, search, delete the other.
    page.get_by_role("button", name="Edit the annotation of “where is the shop”").click()
    edited = page.get_by_role("dialog", name="Edit the annotation")
    edited.get_by_label("Answer").fill("At 2 Main Street.")
    edited.get_by_role("button", name="Save the annotation").click()
    listed.get_by_role("row").filter(has_text="At 2 Main Street.").wait_for()
    page.get_by_label("Search annotations").fill("main street")
    page.get_by_text("1 annotation", exact=True).wait_for()
    page.get_by_role("button", name="Delete the annotation of “where is the shop”").click()
    page.get_by_role("dialog", name="Delete this annotation?").get_by_role(
        "button", name="Delete"
    ).click()
    page.get_by_text("No annotation matches this search.").wait_for()
    page.get_by_label("Search annotations").fill("")
    page.get_by_text("1 annotation", exact=True).wait_for()

    # The reply on, with the local embedding model (the model list's first).
    form = page.get_by_role("form", name="Turn the annotation reply on")
    assert form.get_by_label("Least similarity (0 to 1)").input_value() == "0.9"
    assert "all-MiniLM-L6-v2-onnx-int8" in form.get_by_label("Embedding model").inner_text()
    form.get_by_role("button", name="Turn the annotation reply on").click()
    page.get_by_test_id("reply-state").filter(has_text=re.compile("^On:")).wait_for(timeout=60_000)
    axe(page, context="annotations page, reply on")
    shot(page, "annotations")

    answered = app.client.post("/chat-messages", json={**body, "query": "when do you open"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == "We open at nine."
    assert answered.json()["metadata"]["annotation_reply"]["id"] == made["id"]

    # Its hit, shown from the list's count.
    page.reload()
    page.get_by_role("button", name="1 hit of “when do you open”: show them").click()
    hits = page.get_by_role("dialog", name="Its hits")
    row = hits.get_by_test_id("annotation-hits").get_by_role("row").filter(has_text="Service API")
    row.filter(has_text="We open at nine.").wait_for()
    axe(page, context="an annotation's hits")
    shot(page, "annotation-hits")
    hits.get_by_role("button", name="Close").click()

    # An import from a CSV file, then the export of all of them.
    page.get_by_label("CSV file of annotations").set_input_files(
        files=[
            {
                "name": "faq.csv",
                "mimeType": "text/csv",
                "buffer": b'question,answer\nDo you ship abroad?,"Yes, to the EU."\nCan I return it?,Within 30 days.\n',
            }
        ]
    )
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Imported 2 annotations from faq.csv.").wait_for()
    page.get_by_text("3 annotations").wait_for()
    listed.get_by_role("row").filter(has_text="Yes, to the EU.").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download all as CSV").click()
    exported = download.value.path().read_text()
    assert exported.splitlines()[0] == "question,answer"
    assert 'Do you ship abroad?,"Yes, to the EU."' in exported.splitlines()
    assert "when do you open,We open at nine." in exported.splitlines()
    axe(page, context="annotations page after an import")

    page.get_by_role("button", name="Turn the annotation reply off").click()
    page.get_by_test_id("reply-state").filter(has_text=re.compile("^Off:")).wait_for(timeout=60_000)
    app.client.close()
