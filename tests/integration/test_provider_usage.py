"""`message-was-created` → the workspace provider's usage, on a real database (SQLite, or
PostgreSQL in the distributed mode): exact under concurrent messages, and a failure of the
count never costs the message. And the quota check at run start: no query of its own when the
workspace default serves the app."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from conduit.core.llm.errors import ProviderQuotaExceeded
from conduit.db.models import App, AppMode, Membership, Message, ProviderCredential, Role, Tenant
from conduit.infra import metrics
from conduit.infra.cache import MemoryCache
from conduit.infra.db import Database, build_engine
from conduit.infra.resources import Resources
from conduit.infra.settings import load_settings
from conduit.services.model_providers import (
    ProviderFields,
    app_model_ref,
    check_quota,
    delete_provider,
    update_provider,
    workspace_reference,
)
from conduit.signals import message_was_created, send_after_commit
from conduit.signals.handlers import connect_handlers
from conduit.signals.signals import send_isolated


@pytest.fixture
def provider(db: Database) -> ProviderCredential:
    with db.transaction() as session:
        tenant = Tenant(name="Usage Corp")
        session.add(tenant)
        session.flush()
        row = ProviderCredential(
            tenant_id=tenant.id,
            provider="openai_api_compatible",
            name="Counted",
            base_url="http://127.0.0.1:9/v1",
            models=[],
            quota_used=0,
        )
        session.add(row)
        session.add(App(id="app-1", tenant_id=tenant.id, name="Counted app", mode=AppMode.CHAT))
    return row


_connected: list[Callable[[], None]] = []


def bind_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: Database) -> Resources:
    """Connect the signal handlers bound to `database` (as `conduit/bootstrap.py` does)."""
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    resources = Resources(load_settings(), database, MemoryCache())
    _connected.append(connect_handlers(lambda: resources))
    return resources


@pytest.fixture(autouse=True)
def disconnect_handlers() -> Iterator[None]:
    yield
    while _connected:
        _connected.pop()()


def finished(model_provider: str | None, prompt: int, answer: int = 0) -> Message:
    """A finished message as `record_result` sends it (detached)."""
    return Message(
        app_id="app-1", model_provider=model_provider, message_tokens=prompt, answer_tokens=answer
    )


def served_by(provider: ProviderCredential, prompt: int, answer: int) -> Message:
    message = finished(workspace_reference(provider.id), prompt, answer)
    message.model_id = "m"
    return message


def usage(db: Database, provider: ProviderCredential) -> tuple[int, object]:
    with db.sessions() as session:
        row = session.execute(
            select(ProviderCredential.quota_used, ProviderCredential.last_used_at).where(
                ProviderCredential.id == provider.id
            )
        ).one()
        return int(row[0]), row[1]


def test_concurrent_messages_are_all_counted(
    db: Database, provider: ProviderCredential, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bind_database(monkeypatch, tmp_path, db)
    runs = metrics.MODEL_RUNS.labels(provider="workspace", model="m", status="succeeded")
    runs_before = runs._value.get()
    messages = [served_by(provider, 10 + n, n) for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        failures = list(
            pool.map(lambda m: send_isolated(message_was_created, m, status="succeeded"), messages)
        )
    assert failures == [0] * len(messages)
    used, last_used_at = usage(db, provider)
    assert used == sum(m.message_tokens + m.answer_tokens for m in messages)
    assert last_used_at is not None
    # The metrics label all workspace providers alike (an id per label would grow unbounded).
    assert runs._value.get() - runs_before == len(messages)


def test_other_messages_count_nowhere(
    db: Database, provider: ProviderCredential, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bind_database(monkeypatch, tmp_path, db)
    for message in (
        finished("openai_api_compatible", 5),
        finished("local", 5),
        finished(None, 5),
        served_by(provider, 0, 0),  # failed before the model was called
        finished("workspace:gone", 5),  # deleted meanwhile: matches no row
    ):
        assert send_isolated(message_was_created, message, status="failed") == 0
    assert usage(db, provider) == (0, None)


def test_a_failed_count_loses_the_count_not_the_message(
    db: Database,
    provider: ProviderCredential,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The handlers' database is unreachable; the use case's own database is fine.
    broken = Database(build_engine(f"sqlite:///{tmp_path}/missing/dir/x.db", null_pool=True))
    bind_database(monkeypatch, tmp_path, broken)
    message = served_by(provider, 7, 3)
    with caplog.at_level(logging.ERROR), db.transaction() as session:
        session.add(message)
        send_after_commit(session, message_was_created, message, status="succeeded")
    broken.dispose()

    with db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1
    assert usage(db, provider) == (0, None)
    assert any("update_provider_usage" in record.getMessage() for record in caplog.records), (
        caplog.text
    )


def test_the_quota_check_reuses_the_default_provider_lookup(
    db: Database, provider: ProviderCredential
) -> None:
    with db.transaction() as session:
        row = session.get(ProviderCredential, provider.id)
        assert row is not None
        row.is_default, row.quota_limit, row.quota_used = True, 100, 100
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.sessions() as session:
            app = session.get(App, "app-1")
            assert app is not None
            statements.clear()
            ref = app_model_ref(session, app, None)  # the workspace default: one query
            assert ref is not None and ref["provider"] == workspace_reference(provider.id)
            with pytest.raises(ProviderQuotaExceeded, match="100 of 100 tokens"):
                check_quota(session, ref)
            assert len(statements) == 1, statements

            explicit = app_model_ref(session, app, workspace_reference(provider.id))
            assert explicit is not None
            session.expunge_all()  # as in a fresh transaction: the check reads the row once
            statements.clear()
            with pytest.raises(ProviderQuotaExceeded):
                check_quota(session, explicit)
            assert len(statements) == 1, statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_a_workspace_without_a_default_provider_is_remembered_until_a_provider_changes(
    db: Database, provider: ProviderCredential, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The handlers drop entries of the process's cache.
    cache = bind_database(monkeypatch, tmp_path, db).cache
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    def default_ref() -> dict[str, object] | None:
        with db.sessions() as session:
            app = session.get(App, "app-1")
            assert app is not None
            statements.clear()
            return app_model_ref(session, app, None, cache)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert default_ref() is None
        assert len(statements) == 1, statements  # asked once ...
        assert default_ref() is None
        assert statements == []  # ... then remembered

        # The provider becomes the default through the service: its signal drops the entry.
        member = Membership(tenant_id=provider.tenant_id, account_id="admin", role=Role.OWNER)
        with db.transaction() as session:
            update_provider(
                session,
                member=member,
                provider_id=provider.id,
                fields=ProviderFields(is_default=True),
                secret="s" * 32,
            )
        ref = default_ref()
        assert ref is not None and ref["provider"] == workspace_reference(provider.id)
        assert len(statements) == 1, statements  # a default exists: asked every time (quota)
        assert default_ref() == ref
        assert len(statements) == 1, statements

        # Deleted: the workspace has no default again, asked once and then remembered.
        with db.transaction() as session:
            delete_provider(session, member=member, provider_id=provider.id)
        assert default_ref() is None
        assert len(statements) == 1, statements
        assert default_ref() is None
        assert statements == []
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
