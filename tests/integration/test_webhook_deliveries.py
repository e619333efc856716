"""Callback deliveries on the mode's database (SQLite, or PostgreSQL in the distributed mode),
sent by the real `conduit.webhook.deliver` task on a real Celery worker (threads of this
process, the embedded transport) fed by a real outbox relay, to a real HTTP receiver
(`tests/fakes/webhook_receiver.py`) scripted per request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select

from conduit.db.models import (
    AppMode,
    AppWebhookSecret,
    DeliveryStatus,
    Membership,
    OutboxMessage,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from conduit.errors import Conflict
from conduit.infra.db import Database
from conduit.infra.outbox import OutboxRelay, RelayPolicy, enqueue
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings
from conduit.services import webhook_secrets, webhooks
from conduit.services.accounts import create_admin
from conduit.services.apps import AppFields, create_app
from conduit.tasks.celery_app import create_celery, publisher
from conduit.tasks.embedded import EmbeddedWorker
from conduit.webhooks import WebhookVerificationError, verify
from tests import support
from tests.fakes.webhook_receiver import Reply, WebhookReceiver, hang, webhook_receiver

SERVER_SECRET = "test-secret-key-for-conduit-tests-0123456789"
FAST = {
    "CONDUIT_AUTH_SECRET_KEY": SERVER_SECRET,
    "CONDUIT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    "CONDUIT_WEBHOOK_BACKOFF_BASE": "0.05",
    "CONDUIT_WEBHOOK_BACKOFF_MAX": "0.2",
    "CONDUIT_WEBHOOK_TIMEOUT": "1",
    "CONDUIT_WEBHOOK_RETRY_AFTER_MAX": "5",
}
PAYLOAD = {"task_id": "", "status": "succeeded", "output": {"answer": "héllo"}}


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**FAST)


@pytest.fixture
def member(db: Database) -> Membership:
    with db.transaction() as session:
        account, tenant, _ = create_admin(
            session,
            email=f"hooks-{time.monotonic_ns()}@example.com",
            password="correct horse battery",
            workspace="Hooks",
        )
        found = session.scalars(
            select(Membership).where(
                Membership.account_id == account.id, Membership.tenant_id == tenant.id
            )
        ).one()
        session.expunge(found)
        return found


@pytest.fixture
def app_id(db: Database, member: Membership) -> str:
    with db.transaction() as session:
        app = create_app(
            session,
            member=member,
            fields=AppFields(name="Hooked", mode=AppMode.CHAT),
            server_secret=SERVER_SECRET,
        )
        return app.id


@pytest.fixture
def pipeline(
    db: Database,
    settings: Settings,
    bound: Callable[[Settings, Celery], Resources],
    start_worker: Callable[[Celery], EmbeddedWorker],
) -> Iterator[OutboxRelay]:
    """A worker consuming every queue and a relay sweeping every 50 ms, as a server runs them."""
    app = create_celery(settings)
    app.finalize()
    bound(settings, app)
    start_worker(app)
    relay = OutboxRelay(db, publisher(app), RelayPolicy(interval=0.05))
    db.on_outbox_write(relay.nudge)
    relay.start()
    yield relay
    relay.stop()
    app.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as started:
        yield started


# --- helpers -------------------------------------------------------------------------------


def enqueue_callback(db: Database, app_id: str, url: str, task_id: str | None = None) -> str:
    task_id = task_id or f"task-{time.monotonic_ns()}"
    with db.transaction() as session:
        return webhooks.enqueue_callback(
            session,
            app_id=app_id,
            task_id=task_id,
            url=url,
            payload={**PAYLOAD, "task_id": task_id},
        )


def delivery(db: Database, delivery_id: str) -> WebhookDelivery:
    with db.sessions() as session:
        found = session.get(WebhookDelivery, delivery_id)
        assert found is not None
        return found


def attempts(db: Database, delivery_id: str) -> list[WebhookAttempt]:
    with db.sessions() as session:
        return list(
            session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.number)
            )
        )


def wait_status(db: Database, delivery_id: str, status: DeliveryStatus, timeout: float = 20) -> Any:
    return support.wait_for(
        lambda: delivery(db, delivery_id).status == status,
        timeout=timeout,
        what=f"delivery {delivery_id} to be {status.value}",
    )


def secrets_of(db: Database, app_id: str) -> list[str]:
    with db.transaction() as session:
        return webhook_secrets.signing_secrets(session, app_id, server_secret=SERVER_SECRET)


# --- enqueue, summary, purge (no worker) ---------------------------------------------------


class TestEnqueue:
    def test_enqueue_twice_for_one_task_is_one_delivery_and_one_outbox_row(
        self, db: Database, app_id: str
    ) -> None:
        first = enqueue_callback(db, app_id, "http://127.0.0.1:9/hook", task_id="task-once")
        second = enqueue_callback(db, app_id, "http://127.0.0.1:9/other", task_id="task-once")
        assert first == second
        with db.sessions() as session:
            count = session.scalar(
                select(func.count()).where(WebhookDelivery.task_id == "task-once")
            )
            rows = list(
                session.scalars(select(OutboxMessage).where(OutboxMessage.queue == "webhook"))
            )
        assert count == 1
        assert [row.kwargs for row in rows] == [{"delivery_id": first, "attempt": 1}]
        found = delivery(db, first)
        assert found.url == "http://127.0.0.1:9/hook"
        assert found.status == DeliveryStatus.PENDING

    def test_a_rolled_back_enqueue_leaves_nothing(self, db: Database, app_id: str) -> None:
        class Failed(Exception):
            pass

        def use_case() -> None:
            with db.transaction() as session:
                webhooks.enqueue_callback(
                    session, app_id=app_id, task_id="task-rolled", url="http://x/", payload={}
                )
                raise Failed

        with pytest.raises(Failed):
            use_case()
        with db.sessions() as session:
            assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
            webhook_rows = select(func.count()).where(OutboxMessage.queue == "webhook")
            assert session.scalar(webhook_rows) == 0

    def test_the_summary_of_a_task_without_callback_is_none(self, db: Database) -> None:
        with db.sessions() as session:
            assert webhooks.callback_summary(session, "no-such-task") is None

    def test_an_app_made_before_secrets_gets_one_when_first_needed(
        self, db: Database, app_id: str
    ) -> None:
        with db.transaction() as session:
            session.execute(
                AppWebhookSecret.__table__.delete().where(AppWebhookSecret.app_id == app_id)
            )
        first = secrets_of(db, app_id)
        assert len(first) == 1 and first[0].startswith("whsec_")
        assert secrets_of(db, app_id) == first
        with db.sessions() as session:
            stored = session.get(AppWebhookSecret, app_id)
            assert stored is not None and "whsec_" not in stored.encrypted_secret


class TestPurge:
    def test_purge_removes_finished_deliveries_and_their_attempts_keeps_pending(
        self, db: Database, app_id: str, pipeline: OutboxRelay, receiver: WebhookReceiver
    ) -> None:
        done = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, done, DeliveryStatus.DELIVERED)
        pending = enqueue_callback(db, app_id, "http://127.0.0.1:9/never", task_id="pending-t")
        with db.transaction() as session:
            old = utcnow() - timedelta(days=2)
            for delivery_id in (done, pending):
                row = session.get(WebhookDelivery, delivery_id)
                assert row is not None
                row.created_at = old
                row.status = DeliveryStatus.PENDING if delivery_id == pending else row.status
        with db.transaction() as session:
            removed = webhooks.purge_deliveries(
                session, created_before=utcnow() - timedelta(days=1)
            )
        assert removed == 1
        with db.sessions() as session:
            assert session.get(WebhookDelivery, done) is None
            assert session.get(WebhookDelivery, pending) is not None
            left = session.scalar(select(func.count()).where(WebhookAttempt.delivery_id == done))
        assert left == 0


# --- the delivery task against a real receiver ---------------------------------------------


@pytest.mark.usefixtures("pipeline")
class TestDelivery:
    def test_500_500_200_is_delivered_once_after_three_attempts_with_one_event_id(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        receiver.script(Reply(500), Reply(500), Reply(200))
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        received = receiver.wait_for(3)
        time.sleep(0.3)  # nothing more arrives
        assert [r.answered for r in receiver.received] == [500, 500, 200]
        assert {r.headers["webhook-id"] for r in received} == {delivery_id}
        assert len({r.body for r in received}) == 1  # identical bytes every time
        secret = secrets_of(db, app_id)[0]
        for request in received:
            body = verify(secret, request.headers, request.body, scheme="standard")
            assert body["output"] == {"answer": "héllo"}
        found = delivery(db, delivery_id)
        assert (found.attempts, found.last_status, found.last_error) == (3, 200, None)
        assert found.delivered_at is not None and found.next_attempt_at is None
        history = attempts(db, delivery_id)
        assert [(a.number, a.status_code) for a in history] == [(1, 500), (2, 500), (3, 200)]
        with db.sessions() as session:
            summary = webhooks.callback_summary(session, found.task_id)
        assert summary == {
            "url": receiver.url,
            "status": "delivered",
            "attempts": 3,
            "last_status": 200,
            "delivered_at": int(found.delivered_at.timestamp()),
        }

    def test_404_is_dead_after_one_attempt(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        receiver.script(Reply(404))
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DEAD)
        time.sleep(0.3)
        assert len(receiver.received) == 1
        found = delivery(db, delivery_id)
        assert (found.attempts, found.last_status, found.last_error) == (1, 404, "HTTP 404")
        assert found.dead_at is not None

    def test_a_receiver_down_for_good_is_a_dead_letter_after_1_plus_3_attempts_then_redelivered(
        self, db: Database, app_id: str, member: Membership, receiver: WebhookReceiver
    ) -> None:
        receiver.stop()
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DEAD)
        history = attempts(db, delivery_id)
        assert [a.number for a in history] == [1, 2, 3, 4]
        assert all(a.status_code is None and a.error for a in history)
        assert delivery(db, delivery_id).last_status is None

        receiver.start()  # back, on the same port
        with db.transaction() as session:
            webhooks.redeliver(session, member=member, app_id=app_id, delivery_id=delivery_id)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        time.sleep(0.3)
        assert len(receiver.received) == 1
        assert receiver.received[0].headers["webhook-id"] == delivery_id
        found = delivery(db, delivery_id)
        assert (found.attempts, found.last_status, found.dead_at) == (5, 200, None)

    def test_a_redelivery_gets_a_fresh_retry_budget(
        self, db: Database, app_id: str, member: Membership, receiver: WebhookReceiver
    ) -> None:
        receiver.script(Reply(404))
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DEAD)
        receiver.script(Reply(503), Reply(503), Reply(503), Reply(200))
        with db.transaction() as session:
            webhooks.redeliver(session, member=member, app_id=app_id, delivery_id=delivery_id)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        assert [a.status_code for a in attempts(db, delivery_id)] == [404, 503, 503, 503, 200]

    def test_a_pending_delivery_is_redelivered_only_when_long_overdue(
        self, db: Database, app_id: str, member: Membership, receiver: WebhookReceiver
    ) -> None:
        # A pending delivery whose task failed for good (nothing will send it): no outbox row.
        with db.transaction() as session:
            stuck = WebhookDelivery(
                app_id=app_id,
                task_id=f"stuck-{time.monotonic_ns()}",
                url=receiver.url,
                body=webhooks.encode_body(PAYLOAD),
                status=DeliveryStatus.PENDING,
                attempts=1,
                created_at=utcnow(),
                next_attempt_at=utcnow(),
            )
            session.add(stuck)
        with pytest.raises(Conflict), db.transaction() as session:
            webhooks.redeliver(session, member=member, app_id=app_id, delivery_id=stuck.id)
        with db.transaction() as session:
            row = session.get(WebhookDelivery, stuck.id)
            assert row is not None
            row.next_attempt_at = utcnow() - webhooks.STUCK_AFTER - timedelta(seconds=1)
        with db.transaction() as session:
            webhooks.redeliver(session, member=member, app_id=app_id, delivery_id=stuck.id)
        wait_status(db, stuck.id, DeliveryStatus.DELIVERED)
        assert [a.number for a in attempts(db, stuck.id)] == [2]

    def test_429_retry_after_is_honoured(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        receiver.script(Reply(429, headers={"Retry-After": "1"}), Reply(200))
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        first, second = receiver.received
        # The backoff alone would wait at most 0.05 s (+ a relay sweep of 0.05 s).
        assert 1.0 <= second.at - first.at < 3.0

    def test_a_hang_past_the_timeout_is_retried(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        receiver.script(hang(5), Reply(200))
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        first, second = attempts(db, delivery_id)
        assert first.status_code is None and "timed out" in (first.error or "")
        assert 900 <= first.duration_ms < 3000
        assert second.status_code == 200

    def test_a_task_message_delivered_again_sends_nothing(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        with db.transaction() as session:
            again = enqueue(
                session,
                webhooks.ATTEMPT_TASK,
                queue="webhook",
                kwargs={"delivery_id": delivery_id, "attempt": 1},
            )
        support.wait_for(
            lambda: _outbox_status(db, again) == "succeeded", what="the repeated task to end"
        )
        assert len(receiver.received) == 1
        assert delivery(db, delivery_id).attempts == 1

    def test_during_a_rotation_callbacks_verify_with_the_old_and_the_new_secret(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        old = secrets_of(db, app_id)[0]
        with db.transaction() as session:
            rotated = webhook_secrets.rotate(
                session, app_id, server_secret=SERVER_SECRET, grace_seconds=60
            )
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        (request,) = receiver.received
        assert len(request.headers["x-dify-signature-v1"].split(",")) == 2
        for secret in (old, rotated.secret):
            verify(secret, request.headers, request.body, scheme="standard")
            verify(secret, request.headers, request.body, scheme="dify")

    def test_without_a_grace_only_the_new_secret_verifies(
        self, db: Database, app_id: str, receiver: WebhookReceiver
    ) -> None:
        old = secrets_of(db, app_id)[0]
        with db.transaction() as session:
            rotated = webhook_secrets.rotate(
                session, app_id, server_secret=SERVER_SECRET, grace_seconds=0
            )
        delivery_id = enqueue_callback(db, app_id, receiver.url)
        wait_status(db, delivery_id, DeliveryStatus.DELIVERED)
        (request,) = receiver.received
        verify(rotated.secret, request.headers, request.body)
        with pytest.raises(WebhookVerificationError):
            verify(old, request.headers, request.body)

    def test_an_address_the_ssrf_rules_refuse_at_delivery_is_dead_without_a_request(
        self, db: Database, app_id: str
    ) -> None:
        delivery_id = enqueue_callback(db, app_id, "http://169.254.169.254/latest/meta-data/")
        wait_status(db, delivery_id, DeliveryStatus.DEAD)
        (attempt,) = attempts(db, delivery_id)
        assert attempt.status_code is None
        assert "metadata address 169.254.169.254" in (attempt.error or "")


def _outbox_status(db: Database, row_id: str) -> str:
    with db.sessions() as session:
        row = session.get(OutboxMessage, row_id)
        return row.status.value if row is not None else "gone"
