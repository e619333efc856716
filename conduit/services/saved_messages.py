"""Completions a web end user saved (Dify's saved messages), scoped to (app, end user)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from conduit.db.models import App, EndUser, Message, SavedMessage
from conduit.errors import NotFound
from conduit.services.conversations import is_uuid
from conduit.services.messages import get_message, user_feedbacks


def _readable(app_id: str, end_user_id: str) -> Select[Message]:
    """The only way to select saved messages: one app, one end user, the messages they saved."""
    return (
        select(Message)
        .join(SavedMessage, SavedMessage.message_id == Message.id)
        .where(
            SavedMessage.app_id == app_id,
            SavedMessage.end_user_id == end_user_id,
            Message.app_id == app_id,
            Message.end_user_id == end_user_id,
        )
    )


def list_saved_messages(
    session: Session, app: App, end_user: EndUser, *, last_id: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """One page of the end user's saved messages, newest first (after `last_id`, a saved
    message's id); returns (items, has_more)."""
    query = _readable(app.id, end_user.id)
    if last_id:
        last = (
            session.scalars(query.where(Message.id == last_id)).first()
            if is_uuid(last_id)
            else None
        )
        if last is None:
            raise NotFound("Last Message Not Exists.")
        query = query.where(
            (Message.created_at < last.created_at)
            | ((Message.created_at == last.created_at) & (Message.id < last.id))
        )
    rows = list(
        session.scalars(
            query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    feedbacks = user_feedbacks(session, [m.id for m in page])
    return [_view(m, feedbacks.get(m.id)) for m in page], len(rows) > limit


def _view(message: Message, feedback: Any) -> dict[str, Any]:
    """Dify's `saved_message_fields`."""
    return {
        "id": message.id,
        "inputs": message.inputs or {},
        "query": message.query,
        "answer": message.answer,
        "message_files": [],
        "feedback": {"rating": feedback.rating} if feedback else None,
        "created_at": int(message.created_at.timestamp()),
    }


def save_message(session: Session, app: App, end_user: EndUser, message_id: str) -> None:
    """Save the end user's message (404 when it is not theirs; saved already: nothing)."""
    message = get_message(session, app, end_user, message_id)
    if _saved(session, end_user, message.id) is None:
        session.add(SavedMessage(app_id=app.id, message_id=message.id, end_user_id=end_user.id))


def delete_saved_message(session: Session, app: App, end_user: EndUser, message_id: str) -> None:
    """Forget a saved message (one not saved: nothing, as Dify)."""
    saved = _saved(session, end_user, message_id) if is_uuid(message_id) else None
    if saved is not None and saved.app_id == app.id:
        session.delete(saved)


def _saved(session: Session, end_user: EndUser, message_id: str) -> SavedMessage | None:
    return session.scalars(
        select(SavedMessage).where(
            SavedMessage.message_id == message_id, SavedMessage.end_user_id == end_user.id
        )
    ).first()
