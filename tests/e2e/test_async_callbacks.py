"""Async runs' callbacks over HTTP against a real server, a real Celery worker, the fake model
and a real HTTP receiver started here: the callback of a run's end arrives once, signed (checked
with `conduit.webhooks.verify` and independently with `hmac`); a receiver answering 500, 500,
200 gets one successful delivery after 3 attempts; a receiver down for good makes a dead letter
that the console redelivers once; a stopped run's callback says so; SSRF targets are refused at
submit unless allow-listed (this stack allows loopback: `tests/e2e/test_async_retention.py`'s
does not)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from conduit.webhooks import WebhookVerificationError, verify
from tests.e2e.conftest import Admin, ServiceApp
from tests.e2e.test_async_runs import body_of, poll
from tests.fakes.webhook_receiver import Reply, WebhookReceiver, webhook_receiver

STACK_ENV = {
    "CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "CONDUIT_WEBHOOK_BACKOFF_BASE": "0.2",
    "CONDUIT_WEBHOOK_BACKOFF_MAX": "0.5",
    "CONDUIT_WEBHOOK_TIMEOUT": "2",
}


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


@pytest.fixture
def receiver(module_receiver: WebhookReceiver) -> WebhookReceiver:
    module_receiver.reset()
    return module_receiver


def secret_of(admin: Admin, app_id: str) -> str:
    response = admin.client.get(f"/console/api/apps/{app_id}/webhook-secret")
    assert response.status_code == 200, response.text
    return str(response.json()["secret"])


def callbacks_of(receiver: WebhookReceiver, task_id: str) -> list[Any]:
    return [r for r in receiver.received if orjson.loads(r.body)["task_id"] == task_id]


def wait_callbacks(
    receiver: WebhookReceiver, task_id: str, count: int, timeout: float = 20.0
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(found := callbacks_of(receiver, task_id)) < count:
        assert time.monotonic() < deadline, f"{len(found)} callback(s) of {task_id}"
        time.sleep(0.05)
    return found


class TestCallbacks:
    def test_the_callback_arrives_once_signed_with_the_tasks_end(
        self, chat_app: ServiceApp, service_admin: Admin, receiver: WebhookReceiver
    ) -> None:
        submitted = chat_app.client.post("/chat-messages", json=body_of(callback_url=receiver.url))
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["task_id"]
        task = poll(chat_app.client, submitted.json()["status_url"])
        [received] = wait_callbacks(receiver, task_id, 1)
        time.sleep(0.5)
        assert len(callbacks_of(receiver, task_id)) == 1  # once
        secret = secret_of(service_admin, chat_app.app_id)
        payload = verify(secret, received.headers, received.body)
        assert payload == {
            "task_id": task_id,
            "status": "succeeded",
            "output": task["result"],
            "app_id": chat_app.app_id,
            "user": "alice",
            "created_at": task["created_at"],
            "finished_at": task["finished_at"],
        }
        # Independently of the helper: plain hmac over the raw body, with the secret's key.
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = hmac.new(key, received.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(received.headers["x-dify-signature-v1"], expected)
        signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}."
        standard = hmac.new(key, signed.encode() + received.body, hashlib.sha256).digest()
        assert received.headers["webhook-signature"] == "v1," + base64.b64encode(standard).decode()
        # A tampered body or a stale timestamp fails verification.
        with pytest.raises(WebhookVerificationError):
            verify(secret, received.headers, received.body.replace(b"succeeded", b"failed"))
        with pytest.raises(WebhookVerificationError):
            verify(secret, received.headers, received.body, now=time.time() + 3600)
        # The task's status shows its callback's delivery.
        shown = chat_app.client.get(f"/tasks/{task_id}", params={"user": "alice"}).json()
        assert shown["callback"]["url"] == receiver.url
        assert shown["callback"]["attempts"] == 1
        assert shown["callback"]["last_status"] == 200
        assert shown["callback"]["delivered_at"] is not None

    def test_a_receiver_failing_twice_gets_one_delivery_after_three_attempts(
        self, chat_app: ServiceApp, receiver: WebhookReceiver
    ) -> None:
        receiver.script(Reply(500), Reply(500), Reply(200))
        submitted = chat_app.client.post("/chat-messages", json=body_of(callback_url=receiver.url))
        task_id = submitted.json()["task_id"]
        attempts = wait_callbacks(receiver, task_id, 3)
        assert [a.answered for a in attempts] == [500, 500, 200]
        assert len({a.headers["webhook-id"] for a in attempts}) == 1  # the same event id
        assert len({a.body for a in attempts}) == 1  # the same body
        deadline = time.monotonic() + 10
        while True:
            callback = chat_app.client.get(f"/tasks/{task_id}", params={"user": "alice"}).json()[
                "callback"
            ]
            if callback["delivered_at"] is not None:
                break
            assert time.monotonic() < deadline, callback
            time.sleep(0.1)
        assert callback["attempts"] == 3 and callback["last_status"] == 200
        time.sleep(0.5)
        assert len(callbacks_of(receiver, task_id)) == 3

    def test_a_receiver_down_for_good_makes_a_dead_letter_the_console_redelivers(
        self, chat_app: ServiceApp, service_admin: Admin, receiver: WebhookReceiver
    ) -> None:
        receiver.default = Reply(503)
        submitted = chat_app.client.post("/chat-messages", json=body_of(callback_url=receiver.url))
        task_id = submitted.json()["task_id"]
        wait_callbacks(receiver, task_id, 4)  # 1 + 3 retries
        base = f"/console/api/apps/{chat_app.app_id}/webhook-deliveries"
        deadline = time.monotonic() + 10
        while True:
            dead = service_admin.client.get(base, params={"status": "dead"}).json()["data"]
            mine = [d for d in dead if d["task_id"] == task_id]
            if mine:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(callbacks_of(receiver, task_id)) == 4  # no fifth attempt on its own
        receiver.default = Reply(200)
        redelivered = service_admin.client.post(f"{base}/{mine[0]['id']}/redeliver")
        assert redelivered.status_code == 202, redelivered.text
        attempts = wait_callbacks(receiver, task_id, 5)
        assert attempts[-1].answered == 200
        time.sleep(1.0)
        assert len(callbacks_of(receiver, task_id)) == 5  # delivered once
        shown = service_admin.client.get(f"{base}/{mine[0]['id']}").json()["data"]
        assert shown["status"] == "delivered"

    def test_a_stopped_runs_callback_says_it_stopped(
        self, chat_app: ServiceApp, receiver: WebhookReceiver, upstream: Any
    ) -> None:
        upstream.control(pace_ms=60)
        query = " ".join(f"word{n}" for n in range(60))
        submitted = chat_app.client.post(
            "/chat-messages", json=body_of(query, callback_url=receiver.url)
        )
        task_id = submitted.json()["task_id"]
        deadline = time.monotonic() + 10
        while (
            chat_app.client.get(f"/tasks/{task_id}", params={"user": "alice"}).json()["status"]
            != "running"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        stopped = chat_app.client.post(f"/chat-messages/{task_id}/stop", json={"user": "alice"})
        assert stopped.json()["stopped"] is True
        [received] = wait_callbacks(receiver, task_id, 1)
        payload = orjson.loads(received.body)
        assert payload["status"] == "stopped"
        partial = payload["output"]["answer"]
        assert partial and len(partial) < len(f"You said: {query}")

    def test_ssrf_targets_are_refused_at_submit(self, chat_app: ServiceApp) -> None:
        for url, rule in [
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://10.0.0.7/hook", "10.0.0.7"),
            ("ftp://example.com/hook", "http"),
        ]:
            response = chat_app.client.post("/chat-messages", json=body_of(callback_url=url))
            assert response.status_code == 400, (url, response.text)
            assert response.json()["code"] == "invalid_param"
            assert "callback_url" in response.json()["message"]
            assert rule in response.json()["message"], response.json()["message"]
