"""message-was-created → the conversation's stats (dialogue count, last activity)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from conduit.db.models import Conversation, Message, utcnow
from conduit.infra.runtime import resources
from conduit.signals.signals import message_was_created


@message_was_created.connect
def update_conversation_stats(message: Message, **_: Any) -> None:
    if message.conversation_id is None:
        return
    # One statement: the count is incremented by the database, so concurrent turns never lose
    # one, and no row is loaded into a session for it.
    with resources().db.transaction() as session:
        session.execute(
            update(Conversation)
            .where(Conversation.id == message.conversation_id)
            .values(dialogue_count=Conversation.dialogue_count + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
