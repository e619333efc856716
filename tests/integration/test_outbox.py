"""The transactional outbox on a real database (SQLite, or PostgreSQL in the distributed mode):
enqueue in the use case's transaction, the relay handing rows to a real Redis broker (a private
redis-server the tests stop and start), recovery and cleanup, and `OutboxTask` keeping the row
true when the real `conduit.ops.provision_app` task runs.

`OutboxTask` finds its row through the `outbox_id` message header. A real worker sees custom
headers as `self.request.get(...)`; Celery's eager `apply(headers=...)` only puts them in
`self.request.headers`; both paths are tested, the worker one through a real worker thread that
consumes from the private Redis broker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import conduit.tasks.ops  # noqa: F401  (registers conduit.ops.provision_app as a shared task)
from conduit.db.models import (
    AppMode,
    InstalledApp,
    Membership,
    OutboxMessage,
    OutboxStatus,
    Site,
    new_id,
    utcnow,
)
from conduit.infra.db import Database
from conduit.infra.outbox import (
    OutboxRelay,
    RelayPolicy,
    enqueue,
    purge_finished,
    recover_unfinished,
    waiting_by_queue,
)
from conduit.infra.redis import build_redis
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings
from conduit.infra.tracing import reset_request_id, set_request_id
from conduit.services.accounts import create_admin
from conduit.services.apps import PROVISION_TASK, AppFields, create_app
from conduit.tasks.base import OutboxTask
from conduit.tasks.broker_loss import RedisBrokerWatch
from conduit.tasks.celery_app import create_celery, publisher
from conduit.tasks.embedded import EmbeddedWorker
from tests import support

QUICK_RETRY = RelayPolicy(base_backoff=0.05, max_backoff=0.1)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def broker_settings(
    make_settings: Callable[..., Settings], private_redis: support.PrivateRedis
) -> Settings:
    return make_settings(CONDUIT_BROKER_URL=private_redis.url)


@pytest.fixture
def broker(private_redis: support.PrivateRedis) -> Iterator[redis.Redis]:
    """A client of the broker's Redis, to look at the queues."""
    client = redis.Redis.from_url(private_redis.url)
    yield client
    client.close()


@pytest.fixture
def celery_app(broker_settings: Settings) -> Iterator[Celery]:
    app = create_celery(broker_settings)
    app.finalize()
    yield app
    app.close()


@pytest.fixture
def embedded_app(make_settings: Callable[..., Settings]) -> Iterator[Celery]:
    """A Celery app of the embedded mode (in-memory broker): enough for eager runs."""
    app = create_celery(make_settings())
    app.finalize()
    yield app
    app.close()


@pytest.fixture
def relay(db: Database, celery_app: Celery) -> OutboxRelay:
    return OutboxRelay(db, publisher(celery_app), QUICK_RETRY)


# --- helpers -------------------------------------------------------------------------------


class UseCaseFailed(Exception):
    """Raised by a test to make its transaction roll back."""


def run_failing(db: Database, work: Callable[[Session], object]) -> None:
    """Run `work` in a transaction that then fails, so it rolls back."""
    with db.transaction() as session:
        work(session)
        raise UseCaseFailed


def load_row(db: Database, row_id: str) -> OutboxMessage:
    with db.sessions() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None, f"outbox row {row_id} is gone"
        return row


def row_exists(db: Database, row_id: str) -> bool:
    with db.sessions() as session:
        return session.get(OutboxMessage, row_id) is not None


def add_row(
    db: Database,
    status: OutboxStatus,
    *,
    age: float = 0.0,
    dispatched_age: float | None = None,
    started_age: float | None = None,
    finished_age: float | None = None,
) -> str:
    """An outbox row in a given state; the ages are seconds before now."""
    now = utcnow()

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    row = OutboxMessage(
        id=new_id(),
        task=PROVISION_TASK,
        queue="ops",
        kwargs={},
        headers={},
        status=status,
        created_at=now - timedelta(seconds=age),
        available_at=now - timedelta(seconds=age),
        dispatched_at=ago(dispatched_age),
        started_at=ago(started_age),
        finished_at=ago(finished_age),
    )
    with db.transaction() as session:
        session.add(row)
    return row.id


def queued_messages(broker: redis.Redis, queue: str = "ops") -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in broker.lrange(queue, 0, -1)]


def wait_until_due(db: Database, row_id: str) -> None:
    due = load_row(db, row_id).available_at
    support.wait_for(lambda: utcnow() >= due, timeout=5, what="the row to be due")


def create_app_with_outbox_row(db: Database) -> tuple[str, str]:
    """An app created through the services; returns (app id, its provision outbox row id)."""
    with db.transaction() as session:
        account, tenant, _ = create_admin(
            session,
            email=f"owner-{new_id()[:8]}@example.com",
            password="correct horse battery",
            workspace="Outbox tests",
        )
        member = session.scalars(
            select(Membership).where(
                Membership.account_id == account.id, Membership.tenant_id == tenant.id
            )
        ).one()
        app = create_app(
            session,
            member=member,
            fields=AppFields(name="Provisioned", mode=AppMode.CHAT),
            server_secret="test-server-secret",
        )
        app_id = app.id
    with db.sessions() as session:
        row = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.task == PROVISION_TASK,
                OutboxMessage.kwargs["app_id"].as_string() == app_id,
            )
        ).one()
        return app_id, row.id


def provisioned_records(db: Database, app_id: str) -> tuple[int, int]:
    with db.sessions() as session:
        sites = session.scalar(select(func.count()).where(Site.app_id == app_id))
        installed = session.scalar(select(func.count()).where(InstalledApp.app_id == app_id))
        return int(sites or 0), int(installed or 0)


# --- enqueue -------------------------------------------------------------------------------


class TestEnqueue:
    def test_enqueue_in_a_rolled_back_transaction_leaves_no_row(self, db: Database) -> None:
        written: list[str] = []
        with pytest.raises(UseCaseFailed):
            run_failing(
                db,
                lambda session: written.append(
                    enqueue(session, PROVISION_TASK, queue="ops", kwargs={"app_id": "a"})
                ),
            )
        assert not row_exists(db, written[0])

    def test_committed_enqueue_leaves_a_pending_row_with_the_request_id(self, db: Database) -> None:
        token = set_request_id("req-outbox-1")
        try:
            with db.transaction() as session:
                row_id = enqueue(session, PROVISION_TASK, queue="ops", kwargs={"app_id": "a"})
        finally:
            reset_request_id(token)
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.PENDING
        assert row.task == PROVISION_TASK
        assert row.queue == "ops"
        assert row.kwargs == {"app_id": "a"}
        assert row.headers == {"request_id": "req-outbox-1"}
        assert row.send_attempts == 0
        assert row.run_count == 0
        assert row.available_at <= utcnow()

    def test_delayed_enqueue_becomes_due_after_the_delay(self, db: Database) -> None:
        with db.transaction() as session:
            row_id = enqueue(session, PROVISION_TASK, queue="ops", delay=30)
        row = load_row(db, row_id)
        assert row.available_at - row.created_at == timedelta(seconds=30)

    def test_commit_nudges_the_relay_and_a_rollback_does_not(self, db: Database) -> None:
        nudges: list[int] = []
        db.on_outbox_write(lambda: nudges.append(1))
        with pytest.raises(UseCaseFailed):
            run_failing(db, lambda session: enqueue(session, PROVISION_TASK, queue="ops"))
        assert nudges == []
        with db.transaction() as session:
            enqueue(session, PROVISION_TASK, queue="ops")
            assert nudges == []
        assert nudges == [1]


# --- the relay -----------------------------------------------------------------------------


class TestRelay:
    def test_due_row_is_delivered_to_the_broker_and_marked_dispatched(
        self, db: Database, relay: OutboxRelay, broker: redis.Redis
    ) -> None:
        token = set_request_id("req-relay-1")
        try:
            with db.transaction() as session:
                row_id = enqueue(session, PROVISION_TASK, queue="ops", kwargs={"app_id": "a"})
        finally:
            reset_request_id(token)

        assert relay.relay_once() == 1
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.DISPATCHED
        assert row.dispatched_at is not None
        assert row.last_error is None

        messages = queued_messages(broker)
        assert len(messages) == 1
        headers = messages[0]["headers"]
        assert headers["id"] == row_id  # the row id is the Celery task id
        assert headers["task"] == PROVISION_TASK
        assert headers["outbox_id"] == row_id
        assert headers["request_id"] == "req-relay-1"

    def test_row_not_yet_due_is_not_sent(
        self, db: Database, relay: OutboxRelay, broker: redis.Redis
    ) -> None:
        with db.transaction() as session:
            row_id = enqueue(session, PROVISION_TASK, queue="ops", delay=60)
        assert relay.relay_once() == 0
        assert load_row(db, row_id).status == OutboxStatus.PENDING
        assert broker.llen("ops") == 0

    def test_dispatched_row_is_not_sent_again(
        self, db: Database, relay: OutboxRelay, broker: redis.Redis
    ) -> None:
        with db.transaction() as session:
            enqueue(session, PROVISION_TASK, queue="ops")
        assert relay.relay_once() == 1
        assert relay.relay_once() == 0
        assert broker.llen("ops") == 1

    def test_rows_are_sent_in_batches(
        self, db: Database, celery_app: Celery, broker: redis.Redis
    ) -> None:
        relay = OutboxRelay(db, publisher(celery_app), RelayPolicy(batch=2))
        with db.transaction() as session:
            for _ in range(3):
                enqueue(session, PROVISION_TASK, queue="ops")
        assert relay.relay_once() == 2
        assert relay.relay_once() == 1
        assert broker.llen("ops") == 3

    def test_a_sweep_reaches_a_redis_broker_together_in_the_rows_order(
        self, db: Database, celery_app: Celery, relay: OutboxRelay, broker: redis.Redis
    ) -> None:
        with publisher(celery_app).batch(3) as batch:
            assert batch.atomic  # buffered, pushed in one pipeline when the sweep ends
        with db.transaction() as session:
            row_ids = [enqueue(session, PROVISION_TASK, queue="ops") for _ in range(3)]
        assert relay.relay_once() == 3
        # LPUSH: the first message sent is the last in the list (the first a worker takes).
        pushed = [message["headers"]["id"] for message in reversed(queued_messages(broker))]
        assert pushed == row_ids
        assert {load_row(db, row_id).status for row_id in row_ids} == {OutboxStatus.DISPATCHED}

    def test_an_idle_relay_sends_at_once_and_a_busy_one_gathers_its_commits(
        self, db: Database, celery_app: Celery, broker: redis.Redis
    ) -> None:
        relay = OutboxRelay(db, publisher(celery_app), RelayPolicy(interval=30.0, gather=1.0))
        sweeps: list[int] = []
        relay_once = relay.relay_once

        def counted() -> int:
            found = relay_once()
            if found:
                sweeps.append(found)
            return found

        relay.relay_once = counted  # type: ignore[method-assign]
        db.on_outbox_write(relay.nudge)
        relay.start()
        try:
            started = time.monotonic()
            with db.transaction() as session:
                first = enqueue(session, PROVISION_TASK, queue="ops")
            support.wait_for(
                lambda: load_row(db, first).status == OutboxStatus.DISPATCHED,
                timeout=5,
                what="the first row to be sent",
            )
            # Idle: sent at once, not after the gather's second.
            assert time.monotonic() - started < 0.8
            # Two commits 0.2 s apart within the gather's second after that sweep (a relay
            # sweeping per nudge sends the first alone): one sweep sends both.
            with db.transaction() as session:
                second = enqueue(session, PROVISION_TASK, queue="ops")
            time.sleep(0.2)
            with db.transaction() as session:
                third = enqueue(session, PROVISION_TASK, queue="ops")
            support.wait_for(
                lambda: (
                    {load_row(db, r).status for r in (second, third)} == {OutboxStatus.DISPATCHED}
                ),
                timeout=5,
                what="the gathered rows to be sent",
            )
        finally:
            relay.stop()
        assert sweeps == [1, 2]
        assert broker.llen("ops") == 3

    def test_a_refused_sweep_leaves_all_its_rows_pending(
        self,
        db: Database,
        relay: OutboxRelay,
        broker: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        with db.transaction() as session:
            row_ids = [enqueue(session, PROVISION_TASK, queue="ops") for _ in range(3)]
        private_redis.stop()
        assert relay.relay_once() == 1  # the first row's refusal puts the sweep back
        rows = [load_row(db, row_id) for row_id in row_ids]
        assert {row.status for row in rows} == {OutboxStatus.PENDING}
        assert [row.send_attempts for row in rows] == [1, 0, 0]
        assert len({row.available_at for row in rows}) == 1  # all due again together

        private_redis.start()
        wait_until_due(db, row_ids[0])
        assert relay.relay_once() == 3
        assert sorted(m["headers"]["id"] for m in queued_messages(broker)) == sorted(row_ids)

    def test_broker_outage_keeps_the_row_pending_until_it_is_delivered_once(
        self,
        db: Database,
        relay: OutboxRelay,
        broker: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        with db.transaction() as session:
            row_id = enqueue(session, PROVISION_TASK, queue="ops", kwargs={"app_id": "a"})
        private_redis.stop()

        began = utcnow()
        assert relay.relay_once() == 1
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.PENDING
        assert row.send_attempts == 1
        assert row.last_error is not None
        assert row.last_error.startswith("send failed")
        assert row.available_at > began  # backed off

        private_redis.start()  # an empty broker on the same port
        wait_until_due(db, row_id)
        assert relay.relay_once() == 1
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.DISPATCHED
        assert row.send_attempts == 1
        assert row.last_error is None
        assert relay.relay_once() == 0

        messages = queued_messages(broker)
        assert [message["headers"]["id"] for message in messages] == [row_id]

    def test_sweep_during_a_broker_outage_fails_fast(
        self, db: Database, relay: OutboxRelay, private_redis: support.PrivateRedis
    ) -> None:
        with db.transaction() as session:
            row_id = enqueue(session, PROVISION_TASK, queue="ops")
        private_redis.stop()
        began = time.monotonic()
        relay.relay_once()
        assert load_row(db, row_id).send_attempts == 1
        assert time.monotonic() - began < 1.0

    def test_row_is_given_up_after_max_attempts(
        self, db: Database, celery_app: Celery, private_redis: support.PrivateRedis
    ) -> None:
        relay = OutboxRelay(
            db,
            publisher(celery_app),
            RelayPolicy(base_backoff=0.01, max_backoff=0.02, max_attempts=2),
        )
        with db.transaction() as session:
            row_id = enqueue(session, PROVISION_TASK, queue="ops")
        private_redis.stop()
        relay.relay_once()
        assert load_row(db, row_id).status == OutboxStatus.PENDING
        wait_until_due(db, row_id)
        relay.relay_once()
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.FAILED
        assert row.send_attempts == 2
        assert row.finished_at is not None


# --- recovery and cleanup ------------------------------------------------------------------


class TestRecovery:
    def test_recover_unfinished_puts_dispatched_and_running_rows_back_to_pending(
        self, db: Database
    ) -> None:
        rows = {
            status: add_row(db, status, age=60, dispatched_age=50, started_age=40)
            for status in OutboxStatus
        }
        before = utcnow()
        assert recover_unfinished(db) == 2
        expected = {
            OutboxStatus.PENDING: OutboxStatus.PENDING,
            OutboxStatus.DISPATCHED: OutboxStatus.PENDING,
            OutboxStatus.RUNNING: OutboxStatus.PENDING,
            OutboxStatus.SUCCEEDED: OutboxStatus.SUCCEEDED,
            OutboxStatus.FAILED: OutboxStatus.FAILED,
        }
        for status, row_id in rows.items():
            assert load_row(db, row_id).status == expected[status], status
        for status in (OutboxStatus.DISPATCHED, OutboxStatus.RUNNING):
            assert load_row(db, rows[status]).available_at >= before - timedelta(seconds=1)

    def test_redeliver_stale_only_touches_rows_older_than_the_thresholds(
        self, db: Database, embedded_app: Celery
    ) -> None:
        policy = RelayPolicy(redeliver_dispatched_after=60, redeliver_running_after=600)
        relay = OutboxRelay(db, publisher(embedded_app), policy)
        stale_dispatched = add_row(db, OutboxStatus.DISPATCHED, age=200, dispatched_age=120)
        fresh_dispatched = add_row(db, OutboxStatus.DISPATCHED, age=200, dispatched_age=10)
        stale_running = add_row(
            db, OutboxStatus.RUNNING, age=900, dispatched_age=800, started_age=700
        )
        fresh_running = add_row(
            db, OutboxStatus.RUNNING, age=900, dispatched_age=800, started_age=100
        )
        old_succeeded = add_row(
            db,
            OutboxStatus.SUCCEEDED,
            age=900,
            dispatched_age=800,
            started_age=700,
            finished_age=690,
        )
        old_pending = add_row(db, OutboxStatus.PENDING, age=900)

        assert relay.redeliver_stale() == 2
        assert load_row(db, stale_dispatched).status == OutboxStatus.PENDING
        assert load_row(db, stale_running).status == OutboxStatus.PENDING
        assert load_row(db, fresh_dispatched).status == OutboxStatus.DISPATCHED
        assert load_row(db, fresh_running).status == OutboxStatus.RUNNING
        assert load_row(db, old_succeeded).status == OutboxStatus.SUCCEEDED
        assert load_row(db, old_pending).status == OutboxStatus.PENDING

    def test_redeliver_stale_is_off_without_thresholds(
        self, db: Database, embedded_app: Celery
    ) -> None:
        relay = OutboxRelay(db, publisher(embedded_app), RelayPolicy())
        row_id = add_row(db, OutboxStatus.DISPATCHED, age=10_000, dispatched_age=10_000)
        assert relay.redeliver_stale() == 0
        assert load_row(db, row_id).status == OutboxStatus.DISPATCHED

    def test_purge_finished_deletes_only_succeeded_rows_older_than_the_cutoff(
        self, db: Database
    ) -> None:
        hour = 3600.0
        old_succeeded = add_row(db, OutboxStatus.SUCCEEDED, age=30 * hour, finished_age=25 * hour)
        new_succeeded = add_row(db, OutboxStatus.SUCCEEDED, age=30 * hour, finished_age=hour)
        old_failed = add_row(db, OutboxStatus.FAILED, age=30 * hour, finished_age=25 * hour)
        old_pending = add_row(db, OutboxStatus.PENDING, age=30 * hour)
        old_running = add_row(db, OutboxStatus.RUNNING, age=30 * hour, started_age=29 * hour)

        with db.transaction() as session:
            assert purge_finished(session, older_than=utcnow() - timedelta(hours=24)) == 1
        assert not row_exists(db, old_succeeded)
        for kept in (new_succeeded, old_failed, old_pending, old_running):
            assert row_exists(db, kept)


# --- OutboxTask ----------------------------------------------------------------------------


class TestOutboxTaskEager:
    """`.apply()` of the real task, as the brief for these tests asked."""

    def test_eager_provision_app_creates_the_site_and_installed_app_once(
        self,
        db: Database,
        embedded_app: Celery,
        make_settings: Callable[..., Settings],
        bound: Callable[[Settings, Celery], Resources],
    ) -> None:
        bound(make_settings(), embedded_app)
        app_id, row_id = create_app_with_outbox_row(db)
        task = embedded_app.tasks[PROVISION_TASK]
        for _ in range(2):
            result = task.apply(kwargs={"app_id": app_id}, task_id=row_id, throw=True)
            assert result.get(disable_sync_subtasks=False) is True
        assert provisioned_records(db, app_id) == (1, 1)

    def test_eager_apply_claims_the_row_and_skips_a_second_apply(
        self,
        db: Database,
        embedded_app: Celery,
        make_settings: Callable[..., Settings],
        bound: Callable[[Settings, Celery], Resources],
    ) -> None:
        bound(make_settings(), embedded_app)
        app_id, row_id = create_app_with_outbox_row(db)
        task = embedded_app.tasks[PROVISION_TASK]
        headers = {"outbox_id": row_id}

        task.apply(kwargs={"app_id": app_id}, task_id=row_id, headers=headers, throw=True)
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.SUCCEEDED
        assert row.run_count == 1
        assert provisioned_records(db, app_id) == (1, 1)

        second = task.apply(kwargs={"app_id": app_id}, task_id=row_id, headers=headers, throw=True)
        assert second.get(disable_sync_subtasks=False) is None  # skipped
        assert load_row(db, row_id).run_count == 1


class TestOutboxTaskOnAWorker:
    """The real task relayed through the real broker to a real worker thread."""

    @pytest.fixture
    def worker_app(
        self,
        celery_app: Celery,
        broker_settings: Settings,
        bound: Callable[[Settings, Celery], Resources],
        start_worker: Callable[[Celery], EmbeddedWorker],
    ) -> Celery:
        bound(broker_settings, celery_app)
        start_worker(celery_app)
        return celery_app

    def test_relayed_task_claims_its_row_runs_once_and_ends_succeeded(
        self, db: Database, relay: OutboxRelay, worker_app: Celery
    ) -> None:
        app_id, row_id = create_app_with_outbox_row(db)
        assert relay.relay_once() == 1
        support.wait_for(
            lambda: load_row(db, row_id).status == OutboxStatus.SUCCEEDED,
            timeout=15,
            what="the task to succeed",
        )
        row = load_row(db, row_id)
        assert row.run_count == 1
        assert row.started_at is not None
        assert row.finished_at is not None
        assert row.last_error is None
        assert provisioned_records(db, app_id) == (1, 1)

    def test_duplicate_delivery_of_a_finished_row_is_skipped(
        self,
        db: Database,
        relay: OutboxRelay,
        worker_app: Celery,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        app_id, row_id = create_app_with_outbox_row(db)
        relay.relay_once()
        support.wait_for(
            lambda: load_row(db, row_id).status == OutboxStatus.SUCCEEDED,
            timeout=15,
            what="the task to succeed",
        )
        row = load_row(db, row_id)

        with caplog.at_level(logging.INFO, logger="conduit.tasks.base"):
            # The broker delivers the same message again (e.g. a redelivery after a restart).
            publisher(worker_app)(
                row.task, dict(row.kwargs), row.queue, row.id, {**row.headers, "outbox_id": row.id}
            )
            support.wait_for(
                lambda: any(
                    row_id in r.getMessage() and "duplicate skipped" in r.getMessage()
                    for r in caplog.records
                ),
                timeout=15,
                what="the duplicate to be skipped",
            )
        row = load_row(db, row_id)
        assert row.status == OutboxStatus.SUCCEEDED
        assert row.run_count == 1
        assert provisioned_records(db, app_id) == (1, 1)

    def test_failing_task_marks_its_row_failed_with_the_error(
        self,
        db: Database,
        celery_app: Celery,
        relay: OutboxRelay,
        broker_settings: Settings,
        bound: Callable[[Settings, Celery], Resources],
        start_worker: Callable[[Celery], EmbeddedWorker],
    ) -> None:
        @celery_app.task(name="tests.outbox.broken", base=OutboxTask, bind=True)
        def broken(self: OutboxTask) -> None:
            raise ValueError("the task broke")

        bound(broker_settings, celery_app)
        start_worker(celery_app)
        with db.transaction() as session:
            row_id = enqueue(session, "tests.outbox.broken", queue="ops")
        relay.relay_once()
        support.wait_for(
            lambda: load_row(db, row_id).status == OutboxStatus.FAILED,
            timeout=15,
            what="the task to fail",
        )
        row = load_row(db, row_id)
        assert row.run_count == 1
        assert row.last_error == "ValueError: the task broke"
        assert row.finished_at is not None

    def test_retryable_error_is_retried_and_the_row_ends_succeeded(
        self,
        db: Database,
        celery_app: Celery,
        relay: OutboxRelay,
        broker_settings: Settings,
        bound: Callable[[Settings, Celery], Resources],
        start_worker: Callable[[Celery], EmbeddedWorker],
    ) -> None:
        attempts: list[float] = []

        @celery_app.task(name="tests.outbox.flaky", base=OutboxTask, bind=True)
        def flaky(self: OutboxTask) -> str:
            attempts.append(time.monotonic())
            if len(attempts) == 1:
                raise ConnectionError("the network went away for a moment")
            return "done"

        bound(broker_settings, celery_app)
        start_worker(celery_app)
        with db.transaction() as session:
            row_id = enqueue(session, "tests.outbox.flaky", queue="ops")
        relay.relay_once()
        support.wait_for(
            lambda: (
                load_row(db, row_id).status in (OutboxStatus.SUCCEEDED, OutboxStatus.FAILED)
                and len(attempts) >= 1
            ),
            timeout=15,
            what="the task to finish",
        )
        # The retry's countdown is at most 1 s (retry_backoff with full jitter, first retry).
        support.wait_for(
            lambda: load_row(db, row_id).status == OutboxStatus.SUCCEEDED,
            timeout=3,
            what="the retried task to succeed",
        )
        row = load_row(db, row_id)
        assert len(attempts) == 2
        assert row.run_count == 2


# --- a broker that lost its messages --------------------------------------------------------
# (A worker started in this process, here or in another module, marks it as a worker; the
# eager tests' `get(disable_sync_subtasks=False)` does not mind.)


@pytest.fixture
def watch(private_redis: support.PrivateRedis) -> Iterator[RedisBrokerWatch]:
    client = build_redis(private_redis.url, socket_timeout=2.0)
    yield RedisBrokerWatch(client)
    client.close()


@pytest.fixture
def watched_relay(db: Database, celery_app: Celery, watch: RedisBrokerWatch) -> OutboxRelay:
    return OutboxRelay(db, publisher(celery_app), QUICK_RETRY, watch)


def dispatched_rows(db: Database, relay: OutboxRelay, count: int) -> list[str]:
    with db.transaction() as session:
        ids = [enqueue(session, PROVISION_TASK, queue="ops") for _ in range(count)]
    assert relay.relay_once() == count
    assert {load_row(db, row_id).status for row_id in ids} == {OutboxStatus.DISPATCHED}
    return ids


def restart_keeping_data(private_redis: support.PrivateRedis, broker: redis.Redis) -> None:
    """A restart that keeps the data (a snapshot loaded at start): a new run_id, same keys."""
    broker.save()
    private_redis.stop()
    private_redis.start()


class TestBrokerWatch:
    def test_first_look_at_a_broker_with_its_data_sees_no_loss(
        self, watch: RedisBrokerWatch, private_redis: support.PrivateRedis
    ) -> None:
        assert watch.lost_messages() is True  # a new broker: empty
        other = RedisBrokerWatch(build_redis(private_redis.url))
        assert other.lost_messages() is False
        assert watch.lost_messages() is False

    def test_an_empty_restart_is_a_loss_for_every_watch(
        self, watch: RedisBrokerWatch, private_redis: support.PrivateRedis
    ) -> None:
        other = RedisBrokerWatch(build_redis(private_redis.url))
        watch.lost_messages()
        other.lost_messages()
        private_redis.stop()
        private_redis.start()
        assert watch.lost_messages() is True  # the epoch is gone: it writes a new one
        assert other.lost_messages() is True  # the epoch was replaced
        assert watch.lost_messages() is False
        assert other.lost_messages() is False

    def test_a_restart_that_kept_the_data_is_noticed_too(
        self,
        watch: RedisBrokerWatch,
        private_redis: support.PrivateRedis,
        broker: redis.Redis,
    ) -> None:
        watch.lost_messages()
        restart_keeping_data(private_redis, broker)
        assert watch.lost_messages() is True  # a new run_id: what it holds is checked
        assert watch.lost_messages() is False

    def test_holds_finds_queued_and_delivered_unacknowledged_messages(
        self,
        db: Database,
        relay: OutboxRelay,
        celery_app: Celery,
        watch: RedisBrokerWatch,
    ) -> None:
        first, second, third = dispatched_rows(db, relay, 3)
        with celery_app.connection_for_read() as connection:
            # A consumer took one message and has not acknowledged it.
            taken = connection.default_channel.basic_get(queue="ops", no_ack=False)
            assert taken is not None
            taken_id = taken.headers["id"]
            tasks = [(row_id, "ops") for row_id in (first, second, third, "never-sent")]
            assert watch.holds(tasks) == {first, second, third}
            assert taken_id in {first, second, third}


class TestResendLost:
    def test_rows_of_a_broker_restarted_empty_are_sent_again_within_a_sweep(
        self,
        db: Database,
        watched_relay: OutboxRelay,
        broker: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        assert watched_relay.resend_lost() == 0  # a new broker: nothing dispatched yet
        ids = dispatched_rows(db, watched_relay, 3)
        assert watched_relay.resend_lost() == 0
        private_redis.stop()
        private_redis.start()  # empty

        assert watched_relay.resend_lost() == 3
        assert {load_row(db, row_id).status for row_id in ids} == {OutboxStatus.PENDING}
        assert watched_relay.relay_once() == 3
        assert sorted(m["headers"]["id"] for m in queued_messages(broker)) == sorted(ids)
        assert watched_relay.resend_lost() == 0  # noticed once

    def test_rows_the_broker_kept_are_not_sent_twice(
        self,
        db: Database,
        watched_relay: OutboxRelay,
        broker: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        watched_relay.resend_lost()
        ids = dispatched_rows(db, watched_relay, 2)
        restart_keeping_data(private_redis, broker)
        assert watched_relay.resend_lost() == 0
        assert {load_row(db, row_id).status for row_id in ids} == {OutboxStatus.DISPATCHED}
        assert len(queued_messages(broker)) == 2

    def test_a_row_sent_after_the_loss_and_started_rows_are_left_alone(
        self,
        db: Database,
        watched_relay: OutboxRelay,
        relay: OutboxRelay,
        broker: redis.Redis,
        private_redis: support.PrivateRedis,
    ) -> None:
        watched_relay.resend_lost()
        (lost,) = dispatched_rows(db, watched_relay, 1)
        running = add_row(db, OutboxStatus.RUNNING, age=5, dispatched_age=5, started_age=4)
        private_redis.stop()
        private_redis.start()
        (after,) = dispatched_rows(db, relay, 1)  # another server sent it to the new broker

        assert watched_relay.resend_lost() == 1
        assert load_row(db, lost).status == OutboxStatus.PENDING
        assert load_row(db, after).status == OutboxStatus.DISPATCHED
        assert load_row(db, running).status == OutboxStatus.RUNNING

    def test_a_broker_still_down_is_looked_at_again_when_it_is_back(
        self,
        db: Database,
        watched_relay: OutboxRelay,
        private_redis: support.PrivateRedis,
    ) -> None:
        watched_relay.resend_lost()
        (row_id,) = dispatched_rows(db, watched_relay, 1)
        private_redis.stop()
        began = time.monotonic()
        assert watched_relay.resend_lost() == 0  # no answer: nothing changes, nothing raised
        assert time.monotonic() - began < 3.0
        assert load_row(db, row_id).status == OutboxStatus.DISPATCHED
        private_redis.start()
        assert watched_relay.resend_lost() == 1
        assert load_row(db, row_id).status == OutboxStatus.PENDING

    def test_the_relay_thread_resends_lost_rows_to_a_worker_within_seconds(
        self,
        db: Database,
        celery_app: Celery,
        watch: RedisBrokerWatch,
        broker_settings: Settings,
        bound: Callable[[Settings, Celery], Resources],
        start_worker: Callable[[Celery], EmbeddedWorker],
        private_redis: support.PrivateRedis,
    ) -> None:
        relay = OutboxRelay(
            db, publisher(celery_app), RelayPolicy(interval=0.2, base_backoff=0.05), watch
        )
        relay.resend_lost()
        app_id, row_id = create_app_with_outbox_row(db)
        assert relay.relay_once() == 1  # queued; no worker yet
        private_redis.stop()
        private_redis.start()  # the queued task is gone
        back = time.monotonic()
        bound(broker_settings, celery_app)
        start_worker(celery_app)
        relay.start()
        try:
            support.wait_for(
                lambda: load_row(db, row_id).status == OutboxStatus.SUCCEEDED,
                timeout=15,
                what="the lost task to run",
            )
            took = time.monotonic() - back
        finally:
            relay.stop()
        assert provisioned_records(db, app_id) == (1, 1)
        assert load_row(db, row_id).run_count == 1
        assert took < 5.0, f"sent again and run {took:.1f} s after the broker's return"


def test_queue_depths_count_what_waits_for_a_worker_and_what_waited_too_long(
    db: Database,
) -> None:
    """Pending and dispatched rows wait on their queue (running and finished ones do not); a
    row written before the staleness bound also counts as stale."""
    long_ago = utcnow() - timedelta(minutes=10)
    with db.transaction() as session:
        for queue, status, written in [
            ("generation", OutboxStatus.PENDING, utcnow()),
            ("generation", OutboxStatus.DISPATCHED, long_ago),
            ("generation", OutboxStatus.RUNNING, long_ago),
            ("webhook", OutboxStatus.DISPATCHED, utcnow()),
            ("ops", OutboxStatus.SUCCEEDED, long_ago),
        ]:
            row_id = enqueue(session, "conduit.ops.provision_app", queue=queue)
            session.flush()
            row = session.get(OutboxMessage, row_id)
            assert row is not None
            row.status, row.created_at = status, written
    with db.sessions() as session:
        depths = waiting_by_queue(session, stale_before=utcnow() - timedelta(minutes=1))
    assert depths == {"generation": (2, 1), "webhook": (1, 0)}
