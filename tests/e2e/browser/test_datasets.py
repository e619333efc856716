"""Knowledge in Chromium: the datasets list (create through the dialog, delete with a
confirmation), a dataset's page: two text files uploaded at once, each followed live until it
is `completed`; a file that cannot be parsed ends in `error` with its reason in words, an
unsupported type is refused in words; a document's segments (disable one); hit testing finds
a sentence of an upload."""

from __future__ import annotations

import re
from typing import Any

from tests import support
from tests.e2e.browser.conftest import axe, shot

FERRY = "Ferries to the island leave from pier four every morning at seven."
MARKET = "The fish market by the harbour opens at six and closes at noon."


def test_datasets_upload_progress_segments_and_hit_testing(
    console: Any, service_stack: support.Stack
) -> None:
    page = console
    page.goto(f"{service_stack.base_url}/#/datasets")
    page.get_by_role("heading", name="Knowledge", level=1).wait_for()
    page.get_by_text("No dataset yet").wait_for()
    axe(page)
    shot(page, "datasets-empty")

    # A new dataset, through the dialog: the page of the dataset opens.
    page.get_by_role("button", name="New dataset").click()
    dialog = page.get_by_role("dialog", name="New dataset")
    dialog.get_by_label("Name").fill("Harbour guide")
    dialog.get_by_label("Description").fill("Timetables and opening hours")
    axe(page)
    shot(page, "datasets-create")
    dialog.get_by_role("button", name="Create dataset").click()
    page.get_by_role("heading", name="Harbour guide", level=1).wait_for()
    page.get_by_text("No document yet").wait_for()
    axe(page)
    shot(page, "dataset-empty")

    # An unsupported type: the upload is refused, in words.
    files = page.get_by_label("Files (several at once)")
    files.set_input_files(
        [{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}]
    )
    page.get_by_role("button", name="Upload").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "File type not allowed: .exe" in alert.inner_text()
    shot(page, "dataset-upload-refused")

    # Two text files at once: both followed until completed.
    files.set_input_files(
        [
            {"name": "ferry.txt", "mimeType": "text/plain", "buffer": FERRY.encode()},
            {"name": "market.md", "mimeType": "text/markdown", "buffer": MARKET.encode()},
        ]
    )
    page.get_by_role("button", name="Upload 2 files").click()
    page.get_by_role("status").filter(has_text="Uploaded ferry.txt, market.md").wait_for()
    table = page.get_by_role("table").filter(has_text="ferry.txt")
    for name in ("ferry.txt", "market.md"):
        row = table.get_by_role("row").filter(has_text=name)
        row.get_by_text("Completed").wait_for(timeout=90_000)
        assert re.search(r"1 of 1 segments", row.inner_text()), row.inner_text()
    axe(page)
    shot(page, "dataset-indexed")

    # A PDF that is not one: accepted, then its indexing ends in error with the reason.
    files.set_input_files(
        [{"name": "broken.pdf", "mimeType": "application/pdf", "buffer": b"not a pdf at all"}]
    )
    page.get_by_role("button", name="Upload").click()
    broken = table.get_by_role("row").filter(has_text="broken.pdf")
    broken.get_by_text("Error", exact=True).wait_for(timeout=90_000)
    reason = broken.get_by_role("note").inner_text()
    assert reason.startswith("Reason: ") and len(reason) > len("Reason: ") + 5, reason
    assert broken.get_by_role("button", name="Retry broken.pdf").is_visible()
    shot(page, "dataset-error")

    # A document's segments: disable its one segment.
    table.get_by_role("link", name="ferry.txt").click()
    segments = page.get_by_role("region", name="Segments of ferry.txt")
    segments.get_by_text(FERRY).wait_for()
    segments.get_by_role("button", name="Disable segment 1").click()
    segments.get_by_role("button", name="Enable segment 1").wait_for()
    assert "Disabled" in segments.get_by_role("row").nth(1).inner_text()
    axe(page)
    shot(page, "dataset-segments")
    segments.get_by_role("button", name="Enable segment 1").click()
    segments.get_by_role("button", name="Disable segment 1").wait_for()

    # Hit testing finds the market's sentence.
    page.get_by_label("Query").fill("When does the fish market open by the harbour?")
    page.get_by_role("button", name="Test retrieval").click()
    hits = page.get_by_role("list", name="Retrieved segments")
    hits.wait_for()
    first = hits.get_by_role("listitem").first
    assert "market.md" in first.inner_text() and MARKET in first.inner_text()
    assert re.search(r"Score \d\.\d{3}", first.inner_text())
    axe(page)
    shot(page, "dataset-hit-testing")

    # Back to the list: the dataset shows its documents; delete it, confirmed.
    page.get_by_role("link", name="← Knowledge").click()
    row = page.get_by_role("row").filter(has_text="Harbour guide")
    row.get_by_text("Timetables and opening hours").wait_for()
    row.get_by_role("cell", name="3", exact=True).wait_for()  # its documents
    shot(page, "datasets-list")
    row.get_by_role("button", name="Delete Harbour guide").click()
    confirm = page.get_by_role("dialog", name="Delete this dataset?")
    axe(page)
    confirm.get_by_role("button", name="Delete").click()
    page.get_by_text("No dataset yet").wait_for()


HARBOUR = (
    "The harbour master opens the lock gates at high tide.\n"
    "Fishing boats unload their catch on the north quay.\n"
    "The ferry to the island leaves from pier four at seven."
)
BAKERY = (
    "Sourdough needs flour, water, salt and a lively starter.\n"
    "Loaves bake in a covered pot at 230 degrees for forty minutes."
)


LOCK_GATES = "The lock gates open two hours before high water."
KAYAKS = "Kayaks can be hired at the slipway by the lifeboat station."


def test_a_parent_child_dataset_shows_child_chunks_and_the_ones_that_matched(
    console: Any, service_stack: support.Stack
) -> None:
    page = console
    page.goto(f"{service_stack.base_url}/#/datasets")
    page.get_by_role("heading", name="Knowledge", level=1).wait_for()
    page.get_by_role("button", name="New dataset").click()
    dialog = page.get_by_role("dialog", name="New dataset")
    dialog.get_by_label("Name").fill("Town notes")
    dialog.get_by_role("button", name="Create dataset").click()
    page.get_by_role("heading", name="Town notes", level=1).wait_for()

    # The first upload chooses parent-child chunking for the dataset.
    page.get_by_label("Chunking").select_option("hierarchical_model")
    page.get_by_label("Files (several at once)").set_input_files(
        [
            {
                "name": "town.txt",
                "mimeType": "text/plain",
                "buffer": f"{HARBOUR}\n\n{BAKERY}".encode(),
            }
        ]
    )
    page.get_by_role("button", name="Upload").click()
    table = page.get_by_role("table").filter(has_text="town.txt")
    row = table.get_by_role("row").filter(has_text="town.txt")
    row.get_by_text("Completed").wait_for(timeout=90_000)
    assert "2 of 2 segments" in row.inner_text(), row.inner_text()
    page.get_by_text("parent-child chunks").wait_for()
    assert page.get_by_label("Chunking").is_disabled()  # the dataset's form is set

    # Its segments: each paragraph with its lines as child chunks.
    table.get_by_role("link", name="town.txt").click()
    segments = page.get_by_role("region", name="Segments of town.txt")
    segments.get_by_text("3 child chunks").click()
    children = segments.get_by_role("list", name="Child chunks of segment 1")
    assert children.locator(".child-text").all_inner_texts() == HARBOUR.split("\n")
    axe(page)
    shot(page, "dataset-parent-child-segments")

    # An editor changes a child chunk and adds one: both are searched at once.
    segments.get_by_role("button", name="Edit child chunk 1 of segment 1").click()
    segments.get_by_label("Text of child chunk 1 of segment 1").fill(LOCK_GATES)
    segments.get_by_role("button", name="Save child chunk 1 of segment 1").click()
    edited = children.get_by_role("listitem").first
    edited.get_by_text(LOCK_GATES).wait_for()
    assert "(edited)" in edited.inner_text()
    segments.get_by_label("New child chunk of segment 1").fill(KAYAKS)
    segments.get_by_role("button", name="Add child chunk to segment 1").click()
    children.get_by_text(KAYAKS).wait_for()
    assert len(children.locator(".child-text").all_inner_texts()) == 4
    # A delete asks once more; kept, then deleted.
    segments.get_by_role("button", name="Delete child chunk 2 of segment 1").click()
    segments.get_by_role("button", name="Keep child chunk 2 of segment 1").click()
    segments.get_by_role("button", name="Delete child chunk 2 of segment 1").click()
    segments.get_by_role("button", name="Yes, delete child chunk 2 of segment 1").click()
    children.get_by_text(HARBOUR.split("\n")[1]).wait_for(state="detached")
    assert len(children.locator(".child-text").all_inner_texts()) == 3
    axe(page, context="child chunks edited")
    shot(page, "dataset-parent-child-edited")
    page.get_by_label("Query").fill("Where can I hire a kayak?")
    page.get_by_role("button", name="Test retrieval").click()
    kayak = page.get_by_role("list", name="Child chunks that matched in segment 1")
    kayak.get_by_text(KAYAKS).wait_for()

    # Hit testing: the paragraph, with the line that matched and its score.
    page.get_by_label("Query").fill("How hot is the oven for the bread?")
    page.get_by_role("button", name="Test retrieval").click()
    first = page.get_by_role("list", name="Retrieved segments").get_by_role("listitem").first
    first.get_by_text("Loaves bake in a covered pot").first.wait_for()  # (after the kayak's)
    matched = page.get_by_role("list", name="Child chunks that matched in segment 2")
    assert re.match(r"\d\.\d{3} Loaves bake", matched.get_by_role("listitem").first.inner_text())
    axe(page)
    shot(page, "dataset-parent-child-hits")


def test_a_qa_dataset_shows_each_question_with_its_answer(
    console: Any, service_stack: support.Stack, service_admin: Any, upstream: Any
) -> None:
    """The first upload chooses Q&A chunking; the workspace's default model (the fake's `qa`
    model: a pair per sentence) writes the pairs; the segments and the hits show both."""
    added = service_admin.client.post(
        "/console/api/workspaces/current/model-providers",
        json={"name": "Pairs", "base_url": upstream.base_url, "models": ["fake:qa"],
              "is_default": True},
    )  # fmt: skip
    assert added.status_code == 201, added.text
    try:
        page = console
        page.goto(f"{service_stack.base_url}/#/datasets")
        page.get_by_role("heading", name="Knowledge", level=1).wait_for()
        page.get_by_role("button", name="New dataset").click()
        dialog = page.get_by_role("dialog", name="New dataset")
        dialog.get_by_label("Name").fill("Ferry FAQ")
        dialog.get_by_role("button", name="Create dataset").click()
        page.get_by_role("heading", name="Ferry FAQ", level=1).wait_for()
        page.get_by_label("Chunking").select_option("qa_model")
        page.get_by_text("writes question-and-answer pairs about each chunk").wait_for()
        page.get_by_label("Files (several at once)").set_input_files(
            [{"name": "ferry.txt", "mimeType": "text/plain", "buffer": FERRY.encode()
              + b" Tickets are sold on board."}]
        )  # fmt: skip
        page.get_by_role("button", name="Upload").click()
        table = page.get_by_role("table").filter(has_text="ferry.txt")
        row = table.get_by_role("row").filter(has_text="ferry.txt")
        row.get_by_text("Completed").wait_for(timeout=90_000)
        assert "2 of 2 segments" in row.inner_text(), row.inner_text()
        page.get_by_text("Q&A chunks").wait_for()

        table.get_by_role("link", name="ferry.txt").click()
        segments = page.get_by_role("region", name="Segments of ferry.txt")
        segments.get_by_text("A: Tickets are sold on board.").wait_for()
        assert "Q: What does the text say about Ferries to the?" in segments.inner_text()
        axe(page)
        shot(page, "dataset-qa-segments")

        page.get_by_label("Query").fill("Where are tickets sold?")
        page.get_by_role("button", name="Test retrieval").click()
        hits = page.get_by_role("list", name="Retrieved segments")
        hits.get_by_role("listitem").first.wait_for()
        assert "A: " in hits.inner_text() and "Q: " in hits.inner_text()
        shot(page, "dataset-qa-hits")
    finally:
        service_admin.client.delete(
            f"/console/api/workspaces/current/model-providers/{added.json()['data']['id']}"
        )
