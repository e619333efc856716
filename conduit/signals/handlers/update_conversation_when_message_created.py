"""message-was-created → the conversation's stats (dialogue count, last activity)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, update

from conduit.db.models import Conversation, Message, utcnow
from conduit.infra.runtime import resources
from conduit.signals.signals import message_was_created

_CONVERSATIONS = cast(Table, Conversation.__table__)
# Built once; a Core statement with parameters skips the ORM and the SQL compilation per message.
# The count is incremented by the database, so concurrent turns never lose one.
_COUNT_TURN = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(dialogue_count=_CONVERSATIONS.c.dialogue_count + 1, updated_at=bindparam("now"))
)


@message_was_created.connect
def update_conversation_stats(message: Message, **_: Any) -> None:
    if message.conversation_id is None:
        return
    with resources().db.transaction() as session:
        session.connection().execute(
            _COUNT_TURN, {"conversation_id": message.conversation_id, "now": utcnow()}
        )
