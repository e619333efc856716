"""The logs page in Chromium: an app's conversation listed with who wrote it and its feedback,
its messages with tokens, latency and feedback, and the activity charts drawn with points (and
their data as tables)."""

from __future__ import annotations

from typing import Any

import httpx

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin, service_app
from tests.e2e.test_message_files import PNG


def test_logs_list_conversations_messages_feedback_and_charts(
    console: Any, service_stack: support.Stack, service_admin: Admin, upstream: Any
) -> None:
    upstream.reset()
    app = service_app(
        service_stack,
        service_admin,
        pre_prompt="You are a test assistant.",
        file_upload={"image": {"enabled": True, "transfer_methods": ["local_file"]}},
    )
    body = {"inputs": {}, "user": "alice", "response_mode": "blocking", "auto_generate_name": False}
    first = app.client.post("/chat-messages", json={**body, "query": "where are the tides"})
    assert first.status_code == 200, first.text
    turn = first.json()
    chart = app.client.post(
        "/files/upload",
        files={"file": ("tide chart.png", PNG, "image/png")},
        data={"user": "alice"},
    )
    assert chart.status_code == 201, chart.text
    second = app.client.post(
        "/chat-messages",
        json={
            **body,
            "query": "and the currents",
            "conversation_id": turn["conversation_id"],
            "files": [
                {
                    "type": "image",
                    "transfer_method": "local_file",
                    "upload_file_id": chart.json()["id"],
                }
            ],
        },
    )
    assert second.status_code == 200, second.text
    liked = app.client.post(
        f"/messages/{turn['message_id']}/feedbacks", json={"rating": "like", "user": "alice"}
    )
    assert liked.status_code == 200, liked.text
    app.client.close()

    page = console
    page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/logs")
    page.get_by_role("heading", name="Logs of chat app").wait_for()
    table = page.get_by_test_id("conversations")
    row = table.get_by_role("row").filter(has_text="alice")
    row.wait_for()
    assert "where are the tides" in row.inner_text()
    assert row.get_by_test_id("feedback-stats").inner_text() == "1 like, 0 dislikes"
    page.get_by_text("1 conversation match").wait_for()

    # Each chart has its points (today's runs, the other days at zero) and its data as a table.
    for chart in ("daily-messages", "token-costs", "average-response-time"):
        figure = page.get_by_test_id(f"chart-{chart}")
        figure.get_by_test_id("chart-point").first.wait_for()
        assert figure.get_by_test_id("chart-point").count() >= 1
    runs = page.get_by_test_id("chart-daily-messages")
    assert runs.get_by_test_id("chart-point").count() == 7  # the week, one point a day
    runs.get_by_text("Runs per day as a table").click()
    assert runs.get_by_role("table").get_by_role("row").filter(has_text="2").count() >= 1
    assert "2 runs in total" in runs.get_by_role("img").get_attribute("aria-label")

    # The conversation's messages, oldest first, with tokens, latency and feedback.
    row.get_by_role("button", name="Show").click()
    messages = page.get_by_test_id("logged-message")
    messages.nth(1).wait_for()
    assert messages.count() == 2
    assert "where are the tides" in messages.nth(0).inner_text()
    assert messages.nth(0).get_by_test_id("logged-feedback").inner_text() == "like (user)"
    assert messages.nth(1).get_by_test_id("logged-feedback").inner_text() == "none"
    # The second was sent with an image: named, with a link that opens it.
    attached = messages.nth(1).get_by_test_id("logged-files")
    assert attached.inner_text() == "Attached: tide chart.png"
    link = attached.get_by_role("link", name="tide chart.png").get_attribute("href")
    assert link and httpx.get(link, timeout=10).content == PNG
    assert messages.nth(0).get_by_test_id("logged-files").count() == 0
    usage = turn["metadata"]["usage"]
    assert messages.nth(0).get_by_test_id("logged-tokens").inner_text() == (
        f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} answer"
    )
    shot(page, "logs")
    axe(page, context="logs with a conversation open")

    # A keyword that matches nothing empties the list, in words.
    page.get_by_label("Search messages").fill("zeppelin")
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("No conversations in this range.").wait_for()
