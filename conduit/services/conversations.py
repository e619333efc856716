"""Conversations, scoped to (app, end user); soft-deleted. A web end user may pin theirs
(`pin_conversation`; the list filters on `pinned`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    Table,
    Update,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from conduit.db.models import App, Conversation, EndUser, PinnedConversation, utcnow
from conduit.errors import InvalidParam, NotFound

SORT_FIELDS = ("created_at", "-created_at", "updated_at", "-updated_at")
DEFAULT_NAME = "New conversation"


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def _readable(app_id: str, end_user_id: str) -> Select[Conversation]:
    """The only way to select conversations: one app, one end user, not deleted."""
    return select(Conversation).where(
        Conversation.app_id == app_id,
        Conversation.end_user_id == end_user_id,
        Conversation.is_deleted.is_(False),
    )


def get_conversation(
    session: Session, app: App, end_user: EndUser, conversation_id: str
) -> Conversation:
    if not is_uuid(conversation_id):
        raise InvalidParam("conversation_id must be a valid UUID")
    found = session.scalars(
        _readable(app.id, end_user.id).where(Conversation.id == conversation_id)
    ).first()
    if found is None:
        raise NotFound("Conversation Not Exists.")
    return found


_CONVERSATIONS = cast(Table, Conversation.__table__)
_INSERT_CONVERSATION = insert(_CONVERSATIONS)
_TOUCH_CONVERSATION = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(updated_at=bindparam("now"))
)


def _turn_update(conversation_id: ColumnElement[Any], now: ColumnElement[Any]) -> Update:
    # The database increments the count, so concurrent turns of one conversation never lose one.
    return (
        update(_CONVERSATIONS)
        .where(_CONVERSATIONS.c.id == conversation_id)
        .values(dialogue_count=_CONVERSATIONS.c.dialogue_count + 1, updated_at=now)
    )


_COUNT_TURN = _turn_update(bindparam("conversation_id"), bindparam("now"))


def create_conversation(
    session: Session,
    app: App,
    end_user: EndUser,
    *,
    inputs: dict[str, Any],
    conversation_id: str | None = None,
) -> str:
    """Insert a new conversation of `end_user` and return its id. One Core statement (no ORM
    object to flush): it sits on the path of every new chat."""
    new_id = conversation_id or str(uuid.uuid4())
    session.connection().execute(
        _INSERT_CONVERSATION,
        {
            "id": new_id,
            "app_id": app.id,
            "mode": app.mode.value,
            "name": DEFAULT_NAME,
            "inputs": inputs,
            "introduction": str((app.model_config_ or {}).get("opening_statement") or ""),
            "end_user_id": end_user.id,
            "from_source": "api",
        },
    )
    return new_id


def touch_conversation(session: Session, conversation_id: str) -> None:
    """Mark the conversation as active now (it sorts first in `updated_at` order)."""
    session.connection().execute(
        _TOUCH_CONVERSATION, {"conversation_id": conversation_id, "now": utcnow()}
    )


def count_turn(connection: Connection, conversation_id: str, now: datetime) -> None:
    """One more finished turn (`dialogue_count`) and activity at `now`, in the caller's
    transaction: the message's result and its conversation's stats commit together."""
    connection.execute(_COUNT_TURN, {"conversation_id": conversation_id, "now": now})


def turn_counted(conversation_id: ColumnElement[Any], now: ColumnElement[Any]) -> CTE:
    """`count_turn` as a data-modifying CTE (PostgreSQL), for a statement whose other part
    gives `conversation_id` (a column of another CTE, e.g. a message's UPDATE … RETURNING):
    the turn is counted in that statement, with no round trip of its own."""
    return _turn_update(conversation_id, now).cte("turn_counted")


def snapshot(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "name": conversation.name,
        "inputs": conversation.inputs or {},
        "status": conversation.status,
        "introduction": conversation.introduction or "",
        "created_at": int(conversation.created_at.timestamp()),
        "updated_at": int(conversation.updated_at.timestamp()),
    }


def list_conversations(
    session: Session,
    app: App,
    end_user: EndUser,
    *,
    last_id: str | None,
    limit: int,
    sort_by: str,
    pinned: bool | None = None,
) -> tuple[list[Conversation], bool]:
    """One page of infinite scroll, sorted by `sort_by`; returns (items, has_more). `pinned`:
    only the end user's pinned conversations (True), only the others (False), or all."""
    if sort_by not in SORT_FIELDS:
        raise InvalidParam(f"sort_by must be one of {', '.join(SORT_FIELDS)}")
    descending = sort_by.startswith("-")
    column = Conversation.updated_at if sort_by.endswith("updated_at") else Conversation.created_at
    query = _readable(app.id, end_user.id)
    if pinned is not None:
        pins = select(PinnedConversation.conversation_id).where(
            PinnedConversation.app_id == app.id, PinnedConversation.end_user_id == end_user.id
        )
        query = query.where(Conversation.id.in_(pins) if pinned else Conversation.id.not_in(pins))
    if last_id:
        last = (
            session.scalars(query.where(Conversation.id == last_id)).first()
            if is_uuid(last_id)
            else None
        )
        if last is None:
            raise NotFound("Last Conversation Not Exists.")
        pivot = last.updated_at if sort_by.endswith("updated_at") else last.created_at
        if descending:
            query = query.where(
                (column < pivot) | ((column == pivot) & (Conversation.id < last.id))
            )
        else:
            query = query.where(
                (column > pivot) | ((column == pivot) & (Conversation.id > last.id))
            )
    order = (
        (column.desc(), Conversation.id.desc())
        if descending
        else (column.asc(), Conversation.id.asc())
    )
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def rename_conversation(
    session: Session, app: App, end_user: EndUser, conversation_id: str, *, name: str
) -> Conversation:
    conversation = get_conversation(session, app, end_user, conversation_id)
    conversation.name = name.strip()[:255]
    conversation.updated_at = utcnow()
    return conversation


def delete_conversation(
    session: Session, app: App, end_user: EndUser, conversation_id: str
) -> None:
    conversation = get_conversation(session, app, end_user, conversation_id)
    conversation.is_deleted = True


def pin_conversation(session: Session, app: App, end_user: EndUser, conversation_id: str) -> None:
    """Pin the end user's conversation (404 when it is not theirs; pinned already: nothing)."""
    conversation = get_conversation(session, app, end_user, conversation_id)
    if _pin_of(session, end_user, conversation.id) is None:
        session.add(
            PinnedConversation(
                app_id=app.id, conversation_id=conversation.id, end_user_id=end_user.id
            )
        )


def unpin_conversation(session: Session, app: App, end_user: EndUser, conversation_id: str) -> None:
    """Unpin the end user's conversation (404 when it is not theirs; not pinned: nothing)."""
    conversation = get_conversation(session, app, end_user, conversation_id)
    pin = _pin_of(session, end_user, conversation.id)
    if pin is not None:
        session.delete(pin)


def _pin_of(session: Session, end_user: EndUser, conversation_id: str) -> PinnedConversation | None:
    return session.scalars(
        select(PinnedConversation).where(
            PinnedConversation.conversation_id == conversation_id,
            PinnedConversation.end_user_id == end_user.id,
        )
    ).first()
