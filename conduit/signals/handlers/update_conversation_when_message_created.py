"""message-was-created → the conversation's stats (dialogue count, last activity)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import Conversation, Message, utcnow
from conduit.infra.runtime import resources
from conduit.signals.signals import message_was_created


@message_was_created.connect
def update_conversation_stats(message: Message, **_: Any) -> None:
    if message.conversation_id is None:
        return
    with resources().db.transaction() as session:
        conversation = session.get(Conversation, message.conversation_id)
        if conversation is not None:
            conversation.dialogue_count += 1
            conversation.updated_at = utcnow()
