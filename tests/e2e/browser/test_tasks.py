"""The tasks page in Chromium: an async run submitted through the Service API whose callback
receiver refuses connections becomes a dead letter; the page lists the task with its callback
state and its JSON, the delivery among the dead letters with its attempts; once the receiver is
back, Redeliver delivers it; the webhook secret is shown on request and rotated with a
confirmation, the new one shown once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.browser.conftest import axe, shot
from tests.e2e.conftest import Admin, service_app
from tests.e2e.test_async_runs import body_of
from tests.fakes.webhook_receiver import WebhookReceiver, webhook_receiver

STACK_ENV = {
    "CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "CONDUIT_WEBHOOK_BACKOFF_BASE": "0.1",
    "CONDUIT_WEBHOOK_BACKOFF_MAX": "0.2",
    "CONDUIT_WEBHOOK_RETRIES": "1",
    "CONDUIT_WEBHOOK_TIMEOUT": "2",
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


def test_dead_letter_listed_redelivered_and_secret_rotated(
    console: Any,
    service_stack: support.Stack,
    service_admin: Admin,
    upstream: Any,
    receiver: WebhookReceiver,
) -> None:
    page = console
    upstream.reset()
    app = service_app(service_stack, service_admin, mode="chat", pre_prompt="Be brief.")
    try:
        page.goto(f"{service_stack.base_url}/#/apps/{app.app_id}/tasks")
        page.get_by_role("heading", name="Async tasks of chat app").wait_for()
        page.get_by_text("No async task yet.").wait_for()
        axe(page)
        shot(page, "tasks-empty")

        receiver.stop()  # connections refused: every attempt fails
        submitted = app.client.post("/chat-messages", json=body_of(callback_url=receiver.url))
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["task_id"]
        deadline = time.monotonic() + 30
        dead = f"/console/api/apps/{app.app_id}/webhook-deliveries"
        while not service_admin.client.get(dead, params={"status": "dead"}).json()["data"]:
            assert time.monotonic() < deadline, "no dead letter"
            time.sleep(0.2)

        # The task with its callback's state, and its JSON.
        page.get_by_role("button", name="Refresh tasks").click()
        tasks = page.get_by_role("region", name="Async tasks")
        row = tasks.get_by_role("row").filter(has_text=task_id[:8])
        row.get_by_text("dead letter").wait_for()
        assert "succeeded" in row.inner_text() and "alice" in row.inner_text()
        assert "2 attempts" in row.inner_text()
        row.get_by_role("button", name=f"Task JSON of {task_id[:8]}").click()
        body = tasks.get_by_label(f"Task {task_id} as JSON")
        body.wait_for()
        assert '"status": "dead"' in body.inner_text() and '"answer"' in body.inner_text()
        axe(page)
        shot(page, "tasks-dead-letter")

        # Among the dead letters, with its attempts.
        deliveries = page.get_by_role("region", name="Callback deliveries")
        deliveries.get_by_label("Delivery status").select_option("dead")
        letter = deliveries.get_by_role("row").filter(has_text=task_id[:8])
        letter.get_by_text("dead letter").wait_for()
        letter.get_by_role("button", name=f"Attempts of the delivery of task {task_id[:8]}").click()
        attempts = deliveries.get_by_role(
            "heading", name=f"Attempts of the callback of task {task_id[:8]} (dead letter)"
        )
        attempts.wait_for()
        assert deliveries.get_by_role("cell", name="no answer").count() == 2
        axe(page)
        shot(page, "tasks-attempts")

        # The receiver is back: redeliver; it is delivered.
        receiver.start()
        deliveries.get_by_label("Delivery status").select_option("")
        letter = deliveries.get_by_role("row").filter(has_text=task_id[:8]).first
        letter.get_by_role("button", name=f"Redeliver the callback of task {task_id[:8]}").click()
        letter.get_by_text("delivered", exact=True).wait_for()
        assert len(receiver.wait_for(1)) == 1
        deliveries.get_by_role(
            "heading", name=f"Attempts of the callback of task {task_id[:8]} (delivered)"
        ).wait_for()
        assert deliveries.get_by_role("cell", name="HTTP 200").count() >= 1
        page.get_by_role("button", name="Refresh tasks").click()
        tasks.get_by_role("row").filter(has_text=task_id[:8]).get_by_text("delivered").wait_for()
        shot(page, "tasks-redelivered")

        # The secret: shown on request, rotated with a confirmation, the new one shown once.
        page.get_by_role("button", name="Show secret").click()
        shown = page.locator("#current-secret")
        shown.wait_for()
        old = shown.inner_text()
        assert old.startswith("whsec_")
        page.get_by_role("button", name="Rotate secret").click()
        page.get_by_role("dialog", name="Rotate the webhook secret?").get_by_role(
            "button", name="Rotate"
        ).click()
        fresh = page.get_by_role("dialog", name="The new webhook secret")
        new = fresh.locator("#new-secret").inner_text()
        assert new.startswith("whsec_") and new != old
        assert "previous secret verifies until" in fresh.inner_text()
        axe(page)
        shot(page, "tasks-secret-rotated")
        fresh.get_by_role("button", name="Done").click()
        assert (
            service_admin.client.get(f"/console/api/apps/{app.app_id}/webhook-secret").json()[
                "secret"
            ]
            == new
        )
    finally:
        app.client.close()
