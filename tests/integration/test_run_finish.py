"""A run's finish on a real database (SQLite, or PostgreSQL in the distributed mode): the result
and its conversation's turn count commit together (on PostgreSQL as one self-committing
statement), the count is exact under concurrent turns, and a refused transition changes
neither."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, select, text

from conduit.core.apps.chat import ChatResult
from conduit.core.llm.provider import Usage
from conduit.core.runs.status import InvalidTransition, RunStatus
from conduit.db.models import Conversation, Message
from conduit.infra.db import Database
from conduit.services.conversations import create_conversation
from conduit.services.end_users import get_or_create_end_user
from conduit.services.runs.store import MessageStore, record_result
from conduit.signals import message_was_created
from tests.support import add_chat_app


def running_messages(db: Database, count: int) -> tuple[str, list[str]]:
    """A conversation and `count` messages of it, each `running`."""
    with db.transaction() as session:
        app = add_chat_app(session, "Finish")
        user = get_or_create_end_user(session, app, "alice")
        conversation_id = create_conversation(session, app, user, inputs={})
        messages = [
            Message(
                app_id=app.id,
                conversation_id=conversation_id,
                end_user_id=user.id,
                query=f"q{n}",
                status=RunStatus.RUNNING.value,
            )
            for n in range(count)
        ]
        session.add_all(messages)
        session.flush()
        return conversation_id, [m.id for m in messages]


def result(message_id: str, status: RunStatus = RunStatus.SUCCEEDED) -> ChatResult:
    return ChatResult(
        task_id="t",
        message_id=message_id,
        status=status,
        answer="Hello",
        usage=Usage(prompt_tokens=3, completion_tokens=1),
    )


def dialogue_count(db: Database, conversation_id: str) -> int:
    with db.sessions() as session:
        count = session.scalar(
            select(Conversation.dialogue_count).where(Conversation.id == conversation_id)
        )
        return int(count or 0)


def test_the_result_and_the_turn_count_commit_together(db: Database) -> None:
    conversation_id, (message_id,) = running_messages(db, 1)
    with db.transaction() as session:
        record_result(session.connection(), result(message_id), None)
    assert dialogue_count(db, conversation_id) == 1
    with db.sessions() as session:
        message = session.get(Message, message_id)
        assert message is not None
        assert (message.status, message.answer) == ("succeeded", "Hello")

    # A refused transition (a finished run cannot finish again) counts nothing.
    with pytest.raises(InvalidTransition), db.transaction() as session:
        record_result(session.connection(), result(message_id, RunStatus.STOPPED), None)
    assert dialogue_count(db, conversation_id) == 1


def test_a_rolled_back_finish_counts_no_turn(db: Database) -> None:
    conversation_id, (message_id,) = running_messages(db, 1)

    def fail_after_the_writes() -> None:
        with db.transaction() as session:
            record_result(session.connection(), result(message_id), None)
            raise RuntimeError("the transaction fails after the writes")

    with pytest.raises(RuntimeError):
        fail_after_the_writes()
    assert dialogue_count(db, conversation_id) == 0
    with db.sessions() as session:
        assert session.scalar(select(Message.status).where(Message.id == message_id)) == "running"


def test_concurrent_turns_are_all_counted(db: Database) -> None:
    conversation_id, message_ids = running_messages(db, 16)

    def finish(message_id: str) -> None:
        with db.transaction() as session:
            record_result(session.connection(), result(message_id), None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(finish, message_ids))
    assert dialogue_count(db, conversation_id) == len(message_ids)


def test_the_store_announces_a_finished_message_once_it_has_committed(db: Database) -> None:
    """`message-was-created` goes out after the finish's commit (a handler reading the row in
    its own session sees it finished), once, and not for a refused transition."""
    _, (message_id,) = running_messages(db, 1)
    seen: list[tuple[str | None, str]] = []

    def on_created(message: Message, **kwargs: Any) -> None:
        with db.sessions() as session:
            status = session.scalar(select(Message.status).where(Message.id == message.id))
        seen.append((status, kwargs["status"]))

    message_was_created.connect(on_created)
    try:
        store = MessageStore(db)
        asyncio.run(store.finish(result(message_id)))
        with pytest.raises(InvalidTransition):
            asyncio.run(store.finish(result(message_id, RunStatus.STOPPED)))
    finally:
        message_was_created.disconnect(on_created)
    assert seen == [("succeeded", "succeeded")]


def test_the_store_finishes_a_run_in_one_statement_on_postgresql(db: Database) -> None:
    """PostgreSQL: the message's UPDATE and the turn count are one statement on an autocommit
    connection (one round trip: no BEGIN, no COMMIT). SQLite: two, in a transaction."""
    conversation_id, message_ids = running_messages(db, 2)
    executed: list[str] = []

    def seen(*args: Any) -> None:
        executed.append(args[2])  # (connection, cursor, statement, …)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        asyncio.run(MessageStore(db).finish(result(message_ids[0])))
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(executed) == (1 if db.dialect == "postgresql" else 2), executed
    assert dialogue_count(db, conversation_id) == 1
    with db.sessions() as session:
        # Only the count and the activity: the result's values (its status, say) stay on the
        # message, though the conversation has columns of the same names.
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.status == "normal"

    # A refused transition through the one statement leaves the message and the count alone.
    with pytest.raises(InvalidTransition):
        asyncio.run(MessageStore(db).finish(result(message_ids[0], RunStatus.STOPPED)))
    assert dialogue_count(db, conversation_id) == 1
    with db.sessions() as session:
        finished = session.get(Message, message_ids[0])
        assert finished is not None and finished.status == "succeeded"
    asyncio.run(MessageStore(db).finish(result(message_ids[1], RunStatus.STOPPED)))
    assert dialogue_count(db, conversation_id) == 2


def test_statements_commit_each_on_postgresql_and_leave_the_pool_transactional(
    db: Database,
) -> None:
    conversation_id, (message_id,) = running_messages(db, 1)
    with db.statements() as connection:
        connection.execute(
            text("UPDATE messages SET answer = 'seen' WHERE id = :id"), {"id": message_id}
        )
        if db.dialect == "postgresql":
            # Committed already: another connection sees it while this block is still open.
            with db.sessions() as other:
                assert other.scalar(select(Message.answer).where(Message.id == message_id)) == (
                    "seen"
                )
    # The pool's connections (the same one, with a pool of one in use) are transactional again:
    # a rolled-back write leaves nothing.
    for _ in range(3):
        with db.engine.connect() as connection:
            connection.execute(
                text("UPDATE messages SET answer = 'undone' WHERE id = :id"), {"id": message_id}
            )
            connection.rollback()
    with db.sessions() as session:
        assert session.scalar(select(Message.answer).where(Message.id == message_id)) == "seen"
    assert dialogue_count(db, conversation_id) == 0
