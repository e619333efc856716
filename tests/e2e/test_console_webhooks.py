"""The console's webhook routes on a real server (and a `conduit worker` in the distributed mode):
an app's secret (read, rotate, the old one valid during the grace) and its deliveries (list,
get with attempts, redeliver a dead letter → the real receiver gets it, same event id).

Deliveries are written through the service into the stack's database, as the run pipeline
does; the server's outbox relay and the stack's worker send them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from conduit.db.models import DeliveryStatus
from conduit.infra.db import Database, build_engine
from conduit.services import webhooks
from conduit.webhooks import WebhookVerificationError, verify
from tests import support
from tests.e2e.conftest import Admin, AppFactory, add_member, make_admin, running_stack
from tests.fakes.webhook_receiver import Reply, WebhookReceiver, webhook_receiver

GRACE = 3600
STACK_ENV = {
    "CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "CONDUIT_WEBHOOK_BACKOFF_BASE": "0.05",
    "CONDUIT_WEBHOOK_BACKOFF_MAX": "0.2",
    "CONDUIT_WEBHOOK_TIMEOUT": "2",
    "CONDUIT_WEBHOOK_SECRET_GRACE_SECONDS": str(GRACE),
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    with running_stack(tmp_path_factory.mktemp("hooks"), **STACK_ENV) as started:
        yield started


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


def enqueue_callback(stack: support.Stack, app_id: str, url: str) -> str:
    """A delivery written the way the run pipeline writes one (in the stack's database)."""
    database = Database(build_engine(stack.database_url, null_pool=True))
    task_id = f"task-{time.monotonic_ns()}"
    try:
        with database.transaction() as session:
            return webhooks.enqueue_callback(
                session,
                app_id=app_id,
                task_id=task_id,
                url=url,
                payload={"task_id": task_id, "status": "succeeded", "output": {"answer": "hi"}},
            )
    finally:
        database.dispose()


def delivery_of(admin: Admin, app_id: str, delivery_id: str) -> dict[str, Any]:
    response = admin.client.get(f"/console/api/apps/{app_id}/webhook-deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def wait_status(admin: Admin, app_id: str, delivery_id: str, status: str) -> dict[str, Any]:
    return support.wait_for(  # type: ignore[no-any-return]
        lambda: (found := delivery_of(admin, app_id, delivery_id))["status"] == status and found,
        timeout=30,
        what=f"the delivery to be {status}",
    )


class TestSecret:
    def test_a_new_app_has_a_secret_and_rotation_keeps_the_old_one_for_the_grace(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory, receiver: WebhookReceiver
    ) -> None:
        app_id = make_app()["id"]
        assert stack.sql(
            "SELECT count(*) FROM app_webhook_secrets WHERE app_id = :a", a=app_id
        ) == [(1,)]
        read = admin.client.get(f"/console/api/apps/{app_id}/webhook-secret")
        assert read.status_code == 200, read.text
        old = read.json()
        assert old["secret"].startswith("whsec_")
        assert old["previous_secret_valid_until"] is None

        rotated = admin.client.post(f"/console/api/apps/{app_id}/webhook-secret/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["secret"].startswith("whsec_") and new["secret"] != old["secret"]
        assert abs(new["previous_secret_valid_until"] - (time.time() + GRACE)) < 60
        assert admin.client.get(f"/console/api/apps/{app_id}/webhook-secret").json() == new

        delivery_id = enqueue_callback(stack, app_id, receiver.url)
        wait_status(admin, app_id, delivery_id, "delivered")
        (request,) = receiver.received
        for secret in (old["secret"], new["secret"]):
            assert verify(secret, request.headers, request.body, scheme="standard")["status"]
            assert verify(secret, request.headers, request.body, scheme="dify")["status"]
        with pytest.raises(WebhookVerificationError):
            verify("whsec_" + "A" * 43 + "=", request.headers, request.body)

    def test_a_copied_app_has_a_secret_of_its_own(self, admin: Admin, make_app: AppFactory) -> None:
        source = make_app()["id"]
        copied = admin.client.post(f"/console/api/apps/{source}/copy", json={})
        assert copied.status_code == 201, copied.text
        secrets = {
            admin.client.get(f"/console/api/apps/{app_id}/webhook-secret").json()["secret"]
            for app_id in (source, copied.json()["data"]["id"])
        }
        assert len(secrets) == 2

    def test_another_workspace_gets_404_and_a_normal_member_403(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory
    ) -> None:
        app_id = make_app()["id"]
        stranger = make_admin(stack, workspace="Elsewhere")
        for method, path in (
            ("GET", "webhook-secret"),
            ("POST", "webhook-secret/rotate"),
            ("GET", "webhook-deliveries"),
        ):
            response = stranger.client.request(method, f"/console/api/apps/{app_id}/{path}")
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "app_not_found"
        normal = add_member(stack, admin, "normal")
        refused = normal.client.get(f"/console/api/apps/{app_id}/webhook-secret")
        assert refused.status_code == 403, refused.text
        assert (
            normal.client.get(f"/console/api/apps/{app_id}/webhook-deliveries").status_code == 200
        )


class TestDeadLetters:
    def test_a_dead_letter_is_listed_shown_and_redelivered_once_with_the_same_id(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory, receiver: WebhookReceiver
    ) -> None:
        app_id = make_app()["id"]
        receiver.stop()
        delivery_id = enqueue_callback(stack, app_id, receiver.url)
        dead = wait_status(admin, app_id, delivery_id, "dead")
        assert dead["attempts"] == 4
        assert [a["number"] for a in dead["history"]] == [1, 2, 3, 4]
        assert all(a["status_code"] is None and a["error"] for a in dead["history"])
        assert dead["payload"]["status"] == "succeeded"

        listed = admin.client.get(
            f"/console/api/apps/{app_id}/webhook-deliveries", params={"status": "dead"}
        ).json()
        assert listed["total"] == 1 and listed["page"] == 1 and listed["has_more"] is False
        assert [row["id"] for row in listed["data"]] == [delivery_id]
        assert "history" not in listed["data"][0]
        nothing = admin.client.get(
            f"/console/api/apps/{app_id}/webhook-deliveries", params={"status": "delivered"}
        ).json()
        assert nothing["total"] == 0 and nothing["data"] == []

        receiver.start()
        redelivered = admin.client.post(
            f"/console/api/apps/{app_id}/webhook-deliveries/{delivery_id}/redeliver"
        )
        assert redelivered.status_code == 202, redelivered.text
        assert redelivered.json()["data"]["status"] == "pending"
        done = wait_status(admin, app_id, delivery_id, "delivered")
        time.sleep(0.5)
        (request,) = receiver.received
        assert request.headers["webhook-id"] == delivery_id
        assert done["attempts"] == 5 and done["last_status"] == 200

    def test_pagination_and_bad_parameters(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory, receiver: WebhookReceiver
    ) -> None:
        app_id = make_app()["id"]
        ids = [enqueue_callback(stack, app_id, receiver.url) for _ in range(3)]
        for delivery_id in ids:
            wait_status(admin, app_id, delivery_id, "delivered")
        base = f"/console/api/apps/{app_id}/webhook-deliveries"
        first = admin.client.get(base, params={"limit": 2}).json()
        second = admin.client.get(base, params={"limit": 2, "page": 2}).json()
        assert (first["total"], first["has_more"], len(first["data"])) == (3, True, 2)
        assert (second["has_more"], len(second["data"])) == (False, 1)
        assert {row["id"] for row in first["data"] + second["data"]} == set(ids)
        for params, field in (({"status": "lost"}, "status"), ({"limit": "0"}, "limit")):
            bad = admin.client.get(base, params=params)
            assert bad.status_code == 400, bad.text
            assert bad.json()["code"] == "invalid_param"
            assert bad.json()["message"].startswith(field)

    def test_redeliver_of_a_pending_one_is_409_and_of_another_apps_404(
        self, stack: support.Stack, admin: Admin, make_app: AppFactory, receiver: WebhookReceiver
    ) -> None:
        app_id, other_app = make_app()["id"], make_app()["id"]
        receiver.script(Reply(200, delay=3))  # still at its first attempt for 3 s
        delivery_id = enqueue_callback(stack, app_id, receiver.url)
        receiver.wait_for(1)
        busy = admin.client.post(
            f"/console/api/apps/{app_id}/webhook-deliveries/{delivery_id}/redeliver"
        )
        assert busy.status_code == 409, busy.text
        for path in (
            f"/console/api/apps/{other_app}/webhook-deliveries/{delivery_id}",
            f"/console/api/apps/{other_app}/webhook-deliveries/{delivery_id}/redeliver",
        ):
            method = "POST" if path.endswith("redeliver") else "GET"
            missing = admin.client.request(method, path)
            assert missing.status_code == 404, missing.text
            assert missing.json()["code"] == "not_found"
        wait_status(admin, app_id, delivery_id, DeliveryStatus.DELIVERED.value)


def test_the_webhook_queue_is_consumed_and_counted(
    stack: support.Stack, admin: Admin, make_app: AppFactory, receiver: WebhookReceiver
) -> None:
    """The stack's worker consumes `webhook` (distributed: `/ready` asks for its consumer);
    the attempts are counted where they ran (the embedded server's /metrics)."""
    # The worker's background pool (a child process) subscribes a moment after the worker.
    support.wait_for(
        lambda: stack.client().get("/ready").status_code == 200, what="every queue consumed"
    )
    app_id = make_app()["id"]
    wait_status(admin, app_id, enqueue_callback(stack, app_id, receiver.url), "delivered")
    if not stack.distributed:
        metrics = stack.client().get("/metrics").text
        assert 'conduit_webhook_delivery_attempts_total{outcome="delivered"}' in metrics
