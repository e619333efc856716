"""Messages and feedback as the Service API shows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from conduit.db.models import App, EndUser, Message, MessageFeedback
from conduit.errors import InvalidParam, NotFound
from conduit.services import run_files
from conduit.services.conversations import get_conversation, is_uuid

RATINGS = ("like", "dislike")


def _readable(app_id: str, end_user_id: str) -> Select[Message]:
    """The only way to select messages: one app, one end user."""
    return select(Message).where(Message.app_id == app_id, Message.end_user_id == end_user_id)


def get_message(session: Session, app: App, end_user: EndUser, message_id: str) -> Message:
    message = (
        session.scalars(_readable(app.id, end_user.id).where(Message.id == message_id)).first()
        if is_uuid(message_id)
        else None
    )
    if message is None:
        raise NotFound("Message Not Exists.")
    return message


def message_view(
    message: Message,
    feedback: MessageFeedback | None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "parent_message_id": None,
        "inputs": message.inputs or {},
        "query": message.query,
        "answer": message.answer,
        "status": "error" if message.status == "failed" else "normal",
        "error": message.error,
        "message_files": files or [],
        "feedback": {"rating": feedback.rating} if feedback else None,
        "retriever_resources": [
            {**resource, "message_id": message.id}
            for resource in (message.message_metadata or {}).get("retriever_resources") or []
        ],
        "agent_thoughts": message.agent_thoughts or [],
        "created_at": int(message.created_at.timestamp()),
        "message_tokens": message.message_tokens,
        "answer_tokens": message.answer_tokens,
        "total_tokens": message.message_tokens + message.answer_tokens,
        "provider_response_latency": message.provider_response_latency,
        "total_price": f"{message.total_price:.7f}",
        "currency": message.currency,
    }


def list_messages(
    session: Session,
    app: App,
    end_user: EndUser,
    *,
    conversation_id: str | None,
    first_id: str | None,
    limit: int,
    link: Callable[[str], str] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The latest `limit` messages (older than `first_id`), oldest→newest; (items, has_more).
    `link`: an upload's signed link, for the messages' files."""
    if not conversation_id:
        return [], False
    get_conversation(session, app, end_user, conversation_id)  # 400 / 404 as Dify
    query = _readable(app.id, end_user.id).where(Message.conversation_id == conversation_id)
    if first_id:
        first = (
            session.scalars(query.where(Message.id == first_id)).first()
            if is_uuid(first_id)
            else None
        )
        if first is None:
            raise NotFound("First Message Not Exists.")
        query = query.where(
            (Message.created_at < first.created_at)
            | ((Message.created_at == first.created_at) & (Message.id < first.id))
        )
    rows = list(
        session.scalars(
            query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
        )
    )
    has_more = len(rows) > limit
    page = list(reversed(rows[:limit]))
    feedbacks = user_feedbacks(session, [m.id for m in page])
    files = run_files.message_files(session, [m.id for m in page], link)
    return [message_view(m, feedbacks.get(m.id), files.get(m.id)) for m in page], has_more


def user_feedbacks(session: Session, message_ids: list[str]) -> dict[str, MessageFeedback]:
    if not message_ids:
        return {}
    rows = session.scalars(
        select(MessageFeedback).where(
            MessageFeedback.message_id.in_(message_ids), MessageFeedback.from_source == "user"
        )
    )
    return {row.message_id: row for row in rows}


def set_feedback(
    session: Session,
    app: App,
    end_user: EndUser,
    message_id: str,
    *,
    rating: str | None,
    content: str | None,
) -> None:
    """Like, dislike or (rating None) revoke the end user's feedback on a message."""
    message = get_message(session, app, end_user, message_id)
    existing = session.scalars(
        select(MessageFeedback).where(
            MessageFeedback.message_id == message.id,
            MessageFeedback.from_source == "user",
            MessageFeedback.from_end_user_id == end_user.id,
        )
    ).first()
    if rating is None:
        if existing is None:
            raise InvalidParam("rating: there is no feedback to revoke")
        session.delete(existing)
        return
    if rating not in RATINGS:
        raise InvalidParam("rating must be like, dislike or null")
    if existing is None:
        session.add(
            MessageFeedback(
                app_id=app.id,
                conversation_id=message.conversation_id,
                message_id=message.id,
                rating=rating,
                content=content,
                from_source="user",
                from_end_user_id=end_user.id,
            )
        )
    else:
        existing.rating = rating
        existing.content = content


def list_app_feedbacks(
    session: Session, app: App, *, page: int, limit: int
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(MessageFeedback)
        .where(MessageFeedback.app_id == app.id)
        .order_by(MessageFeedback.created_at.desc(), MessageFeedback.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return [
        {
            "id": row.id,
            "app_id": row.app_id,
            "conversation_id": row.conversation_id,
            "message_id": row.message_id,
            "rating": row.rating,
            "content": row.content,
            "from_source": row.from_source,
            "from_end_user_id": row.from_end_user_id,
            "from_account_id": row.from_account_id,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        }
        for row in rows
    ]
