"""The unit of work's after-commit buffer and the signals sent through it, on a real database
(SQLite, or PostgreSQL in the distributed mode) with real sessions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blinker import NamedSignal
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import conduit.signals
from conduit.db.models import Tenant
from conduit.infra.db import Database, after_commit
from conduit.signals import signals as signal_module
from conduit.signals.signals import send_after_commit, send_isolated, tenant_was_created

SIGNAL_NAMES = [
    "app-was-created",
    "app-was-updated",
    "app-was-deleted",
    "app-model-config-was-updated",
    "tenant-was-created",
    "tenant-was-updated",
    "message-was-created",
    "model-provider-was-updated",
    "dataset-was-deleted",
    "document-was-deleted",
    "document-index-created",
    "app-draft-workflow-was-synced",
    "app-published-workflow-was-updated",
]


def committed_tenants(db: Database, name: str) -> int:
    """How many tenants of this name another session sees (i.e. committed ones)."""
    with db.sessions() as other:
        return int(other.scalar(select(func.count()).where(Tenant.name == name)) or 0)


class UseCaseFailed(Exception):
    """Raised by a test to make its transaction roll back."""


def run_failing(db: Database, work: Callable[[Session], object]) -> None:
    """Run `work` in a transaction that then fails, so it rolls back."""
    with db.transaction() as session:
        work(session)
        raise UseCaseFailed


def fail_in_savepoint(session: Session) -> None:
    with session.begin_nested():
        session.add(Tenant(name="inner"))
        raise UseCaseFailed


class Sender:
    """A sender of our own, so no receiver connected elsewhere to any sender is ours."""


@pytest.fixture
def sender() -> Sender:
    return Sender()


@pytest.fixture
def connect() -> Iterator[Callable[[NamedSignal, Any, Callable[..., None]], None]]:
    """Connect receivers for one sender; every one is disconnected after the test."""
    connected: list[tuple[NamedSignal, Callable[..., None]]] = []

    def _connect(signal: NamedSignal, sender: Any, receiver: Callable[..., None]) -> None:
        signal.connect(receiver, sender=sender, weak=False)
        connected.append((signal, receiver))

    yield _connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


class TestAfterCommit:
    def test_callback_runs_after_the_commit_not_before(self, db: Database) -> None:
        seen: list[int] = []
        with db.sessions() as session:
            session.add(Tenant(name="after-commit"))
            session.flush()
            after_commit(session, lambda: seen.append(committed_tenants(db, "after-commit")))
            assert seen == []
            session.commit()
        assert seen == [1]  # the row was already visible to others when the callback ran

    def test_callback_is_dropped_on_rollback(self, db: Database) -> None:
        ran: list[str] = []
        with db.sessions() as session:
            session.add(Tenant(name="rolled-back"))
            session.flush()
            after_commit(session, lambda: ran.append("dropped"))
            session.rollback()
            session.add(Tenant(name="committed-later"))
            session.commit()  # the next transaction does not inherit the dropped callback
        assert ran == []
        assert committed_tenants(db, "rolled-back") == 0

    def test_callback_is_dropped_when_the_transaction_fails(self, db: Database) -> None:
        ran: list[str] = []

        def work(session: Session) -> None:
            session.add(Tenant(name="failed"))
            after_commit(session, lambda: ran.append("dropped"))

        with pytest.raises(UseCaseFailed):
            run_failing(db, work)
        assert ran == []
        assert committed_tenants(db, "failed") == 0

    def test_callback_runs_once(self, db: Database) -> None:
        ran: list[str] = []
        with db.sessions() as session:
            session.add(Tenant(name="once"))
            after_commit(session, lambda: ran.append("ran"))
            session.commit()
            session.add(Tenant(name="twice"))
            session.commit()
        assert ran == ["ran"]

    def test_callbacks_run_in_registration_order(self, db: Database) -> None:
        ran: list[int] = []
        with db.transaction() as session:
            session.add(Tenant(name="order"))
            for number in range(3):
                after_commit(session, lambda number=number: ran.append(number))
        assert ran == [0, 1, 2]

    def test_failing_callback_is_logged_and_the_others_still_run(
        self, db: Database, caplog: pytest.LogCaptureFixture
    ) -> None:
        ran: list[str] = []

        def broken() -> None:
            raise ValueError("side effect broke")

        with caplog.at_level(logging.ERROR, logger="conduit.infra.db"), db.transaction() as session:
            session.add(Tenant(name="isolated"))
            after_commit(session, broken)
            after_commit(session, lambda: ran.append("second"))
        assert ran == ["second"]
        assert committed_tenants(db, "isolated") == 1
        failures = [
            r for r in caplog.records if r.exc_info and "side effect broke" in str(r.exc_info[1])
        ]
        assert len(failures) == 1

    def test_releasing_a_savepoint_does_not_run_the_callbacks_early(self, db: Database) -> None:
        ran: list[str] = []
        with db.transaction() as session:
            session.add(Tenant(name="savepoint"))
            after_commit(session, lambda: ran.append("ran"))
            with session.begin_nested():
                session.add(Tenant(name="inside-savepoint"))
            assert ran == []
        assert ran == ["ran"]

    def test_rolling_back_a_savepoint_keeps_the_outer_callbacks(self, db: Database) -> None:
        ran: list[str] = []
        with db.transaction() as session:
            session.add(Tenant(name="outer"))
            after_commit(session, lambda: ran.append("ran"))
            with pytest.raises(UseCaseFailed):
                fail_in_savepoint(session)
        assert committed_tenants(db, "outer") == 1
        assert ran == ["ran"]


class TestSendAfterCommit:
    def test_signal_is_received_after_the_commit_only(
        self, db: Database, sender: Sender, connect: Any
    ) -> None:
        received: list[tuple[Any, dict[str, Any], int]] = []

        def receiver(who: Any, **kwargs: Any) -> None:
            received.append((who, kwargs, committed_tenants(db, "signalled")))

        connect(tenant_was_created, sender, receiver)
        with db.sessions() as session:
            session.add(Tenant(name="signalled"))
            session.flush()
            send_after_commit(session, tenant_was_created, sender, account_id="acc-1")
            assert received == []
            session.commit()
        assert received == [(sender, {"account_id": "acc-1"}, 1)]

    def test_signal_is_dropped_on_rollback(
        self, db: Database, sender: Sender, connect: Any
    ) -> None:
        received: list[Any] = []
        connect(tenant_was_created, sender, lambda who, **_: received.append(who))

        def work(session: Session) -> None:
            session.add(Tenant(name="never"))
            send_after_commit(session, tenant_was_created, sender)

        with pytest.raises(UseCaseFailed):
            run_failing(db, work)
        assert received == []

    def test_failing_receiver_is_logged_and_the_next_one_still_runs(
        self, db: Database, sender: Sender, connect: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        received: list[str] = []

        def failing(who: Any, **_: Any) -> None:
            raise ValueError("receiver broke")

        def working(who: Any, **_: Any) -> None:
            received.append("working")

        connect(tenant_was_created, sender, failing)
        connect(tenant_was_created, sender, working)
        with (
            caplog.at_level(logging.ERROR, logger="conduit.signals.signals"),
            db.transaction() as session,
        ):
            session.add(Tenant(name="isolated-signal"))
            send_after_commit(session, tenant_was_created, sender)
        assert received == ["working"]
        failures = [
            r
            for r in caplog.records
            if r.name == "conduit.signals.signals"
            and r.exc_info
            and "receiver broke" in str(r.exc_info[1])
        ]
        assert len(failures) == 1
        assert "tenant-was-created" in failures[0].getMessage()

    def test_send_isolated_counts_the_failures(self, sender: Sender, connect: Any) -> None:
        received: list[str] = []

        def failing(who: Any, **_: Any) -> None:
            raise ValueError("receiver broke")

        connect(tenant_was_created, sender, failing)
        connect(tenant_was_created, sender, lambda who, **_: received.append("ok"))
        assert send_isolated(tenant_was_created, sender) == 1
        assert received == ["ok"]

    def test_receiver_for_another_sender_is_not_called(
        self, db: Database, sender: Sender, connect: Any
    ) -> None:
        received: list[Any] = []
        connect(tenant_was_created, Sender(), lambda who, **_: received.append(who))
        with db.transaction() as session:
            session.add(Tenant(name="other-sender"))
            send_after_commit(session, tenant_was_created, sender)
        assert received == []


class TestSignalNames:
    @pytest.mark.parametrize("name", SIGNAL_NAMES)
    def test_signal_is_defined_and_exported(self, name: str) -> None:
        attribute = name.replace("-", "_")
        signal = getattr(signal_module, attribute)
        assert isinstance(signal, NamedSignal)
        assert signal.name == name
        assert getattr(conduit.signals, attribute) is signal
        assert attribute in conduit.signals.__all__

    def test_module_defines_no_unlisted_signal(self) -> None:
        defined = {
            value.name for value in vars(signal_module).values() if isinstance(value, NamedSignal)
        }
        assert defined == set(SIGNAL_NAMES)
