"""The console's list of an app's async tasks (`GET /console/api/apps/{id}/tasks`): every end
user's, newest first, paged, filtered by status, each with its callback's delivery; one task's
status body at `GET …/tasks/{task_id}` whoever started it; another workspace's app or task is
a 404; bad filters and pages are 400s naming the parameter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.e2e.conftest import Admin, ServiceApp, make_admin
from tests.e2e.test_async_runs import body_of, poll
from tests.fakes.webhook_receiver import Reply, WebhookReceiver, webhook_receiver

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


def wait_task(admin: Admin, app_id: str, task_id: str, until: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        listed = admin.client.get(f"/console/api/apps/{app_id}/tasks", params={"limit": 100})
        assert listed.status_code == 200, listed.text
        found = [t for t in listed.json()["data"] if t["task_id"] == task_id]
        if found and until(found[0]):
            return dict(found[0])
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_tasks_listed_with_their_callbacks_filtered_and_scoped(
    chat_app: ServiceApp,
    service_stack: support.Stack,
    service_admin: Admin,
    receiver: WebhookReceiver,
) -> None:
    receiver.default = Reply(503)
    plain = chat_app.client.post("/chat-messages", json=body_of(user="bob"))
    assert plain.status_code == 202, plain.text
    poll(chat_app.client, plain.json()["status_url"])
    called = chat_app.client.post("/chat-messages", json=body_of(callback_url=receiver.url))
    assert called.status_code == 202, called.text
    task_id = called.json()["task_id"]
    dead = wait_task(
        service_admin,
        chat_app.app_id,
        task_id,
        lambda t: t["callback"] and t["callback"]["status"] == "dead",
    )
    assert dead["status"] == "succeeded" and dead["user"] == "alice" and dead["kind"] == "chat"
    assert dead["callback"]["url"] == receiver.url
    assert dead["callback"]["attempts"] == 2 and dead["callback"]["last_status"] == 503
    assert dead["created_at"] <= dead["finished_at"]

    base = f"/console/api/apps/{chat_app.app_id}/tasks"
    listed = service_admin.client.get(base).json()
    assert listed["total"] == 2 and listed["page"] == 1 and not listed["has_more"]
    assert [t["task_id"] for t in listed["data"]] == [task_id, plain.json()["task_id"]]
    assert listed["data"][1]["callback"] is None and listed["data"][1]["user"] == "bob"
    first = service_admin.client.get(base, params={"limit": 1}).json()
    assert first["has_more"] and [t["task_id"] for t in first["data"]] == [task_id]
    assert service_admin.client.get(base, params={"status": "failed"}).json()["data"] == []
    assert service_admin.client.get(base, params={"status": "succeeded"}).json()["total"] == 2

    # One task's status body, whoever started it (here the Service API's "alice").
    shown = service_admin.client.get(f"{base}/{task_id}")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["task_id"] == task_id and body["status"] == "succeeded"
    assert body["callback"]["status"] == "dead" and "answer" in body["result"]

    support.assert_envelope(
        service_admin.client.get(base, params={"status": "done"}), 400, "invalid_param", "status"
    )
    support.assert_envelope(
        service_admin.client.get(base, params={"page": "0"}), 400, "invalid_param", "page"
    )
    support.assert_envelope(service_admin.client.get(f"{base}/not-a-task"), 404, "task_not_found")
    stranger = make_admin(service_stack, workspace="Elsewhere")
    try:
        assert stranger.client.get(base).status_code == 404
        assert stranger.client.get(f"{base}/{task_id}").status_code == 404
    finally:
        stranger.client.close()
