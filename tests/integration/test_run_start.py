"""A run's start on a real database (SQLite, or PostgreSQL in the distributed mode): `plan_run`
only reads, and `write_run`'s writes go to the database together with the commit
(`commit_together`: psycopg's pipeline mode on PostgreSQL), where an error still fails the
whole start and leaves nothing behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from conduit.core.runs.status import RunStatus
from conduit.db.models import App, Conversation, EndUser, Message, OutboxMessage
from conduit.infra.db import Database, commit_together, pipeline_aborted
from conduit.infra.settings import Settings, load_settings
from conduit.services.end_users import get_or_create_end_user
from conduit.services.runs.chat import NAME_TASK, plan_run, write_run
from conduit.services.runs.chat import ChatRequest as RunRequest
from tests.support import add_chat_app


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for name in list(os.environ):
        if name.startswith("CONDUIT_") and not name.startswith("CONDUIT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(tmp_path / ".conduit"))
    return load_settings()


@pytest.fixture
def app_and_user(db: Database) -> tuple[App, EndUser]:
    with db.transaction() as session:
        app = add_chat_app(session, "Start")
        user = get_or_create_end_user(session, app, "alice")
        session.expunge_all()
    return app, user


@pytest.fixture
def statements(db: Database) -> Iterator[list[str]]:
    """Every statement the engine executes, in order."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).lstrip().split(None, 1)[0].upper())

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def new_chat(query: str = "Hello") -> RunRequest:
    return RunRequest(mode="chat", inputs={}, query=query, response_mode="streaming")


def count(db: Database, model: type[Any]) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_commit_together_needs_a_pinned_session(db: Database) -> None:
    with db.transaction() as session:
        if db.dialect == "postgresql":
            with pytest.raises(RuntimeError, match="pinned"), commit_together(session):
                pass
        else:  # nothing to pin: no pipeline
            with commit_together(session):
                pass


def test_planning_a_run_only_reads(
    db: Database, settings: Settings, app_and_user: tuple[App, EndUser], statements: list[str]
) -> None:
    app, user = app_and_user
    with db.sessions() as session:
        planned = plan_run(
            session, app=app, end_user=user, request=new_chat(), settings=settings, task_id="t1"
        )
        session.rollback()
    assert planned.new_conversation and planned.name_conversation
    assert planned.spec.body.conversation_id == planned.ids.new_conversation_id
    assert set(statements) <= {"SELECT"}  # the workspace's default provider, nothing else
    assert count(db, Message) == count(db, Conversation) == 0


def test_the_writes_commit_together(
    db: Database, settings: Settings, app_and_user: tuple[App, EndUser], statements: list[str]
) -> None:
    app, user = app_and_user
    with db.transaction(pinned=True) as session:
        planned = plan_run(
            session, app=app, end_user=user, request=new_chat(), settings=settings, task_id="t1"
        )
        before = len(statements)
        with commit_together(session):
            if db.dialect == "postgresql":
                driver = session.connection().connection.driver_connection
                assert driver is not None and driver.pgconn.pipeline_status != 0
            write_run(session, app, planned)
    assert statements[before:] == ["INSERT", "INSERT", "INSERT"]  # conversation, naming, message
    with db.sessions() as session:
        message = session.get(Message, planned.ids.message_id)
        assert message is not None and message.status == RunStatus.RUNNING.value
        assert message.conversation_id == planned.spec.body.conversation_id
        assert message.task_id == "t1" and message.query == "Hello"
        assert session.get(Conversation, planned.spec.body.conversation_id) is not None
        naming = session.scalars(select(OutboxMessage).where(OutboxMessage.task == NAME_TASK))
        assert [m.kwargs for m in naming] == [
            {"conversation_id": planned.spec.body.conversation_id}
        ]


def test_an_error_in_the_writes_fails_the_commit_and_writes_nothing(
    db: Database, settings: Settings, app_and_user: tuple[App, EndUser]
) -> None:
    app, user = app_and_user
    gone = App(id="no-such-app", tenant_id=app.tenant_id, name="x", mode=app.mode)

    def start_on_a_missing_app() -> None:
        with db.transaction(pinned=True) as session:
            planned = plan_run(
                session, app=app, end_user=user, request=new_chat(), settings=settings, task_id="t1"
            )
            with commit_together(session):
                write_run(session, gone, planned)  # its foreign keys fail

    # The violation itself, or (as psycopg happened to read the pipeline's results) the
    # abort of the statements after it, which `start_run` answers by writing again unpipelined.
    with pytest.raises((IntegrityError, OperationalError)) as raised:
        start_on_a_missing_app()
    assert isinstance(raised.value, IntegrityError) or pipeline_aborted(raised.value)
    assert count(db, Message) == count(db, Conversation) == count(db, OutboxMessage) == 0
    # The connection went back to the pool in a usable state: the next start commits.
    with db.transaction(pinned=True) as session:
        planned = plan_run(
            session, app=app, end_user=user, request=new_chat(), settings=settings, task_id="t2"
        )
        with commit_together(session):
            write_run(session, app, planned)
    assert count(db, Message) == count(db, Conversation) == 1


def test_concurrent_starts_share_the_pool_safely(
    db: Database, settings: Settings, app_and_user: tuple[App, EndUser]
) -> None:
    """The commit returns the connection to the pool only once its pipeline has ended: a
    connection handed to another thread with the pipeline still open fails that thread's
    next statement ("connection not in pipeline mode")."""
    app, user = app_and_user
    threads, each = 6, 25

    def start(n: int) -> None:
        with db.transaction(pinned=True) as session:
            planned = plan_run(
                session,
                app=app,
                end_user=user,
                request=new_chat(f"q{n}"),
                settings=settings,
                task_id=f"t{n}",
            )
            with commit_together(session):
                write_run(session, app, planned)
        with db.engine.begin() as connection:  # another use of a pooled connection at once
            connection.execute(select(func.count()).select_from(Message)).scalar()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(start, range(threads * each)))
    assert count(db, Message) == threads * each
