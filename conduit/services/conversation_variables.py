"""A chatflow conversation's variables: declared by its workflow, given their first values
when the conversation starts, changed by the workflow's assigner nodes (stored with each
turn's end) and through the Service API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.workflow.variables import json_type
from conduit.db.models import App, ConversationVariable, EndUser, utcnow
from conduit.errors import BadRequest, NotFound
from conduit.services import conversations

VARIABLE_NOT_FOUND = "Conversation Variable Not Exists."  # Dify's words

# Which JSON values each declared type holds (Dify's conversation variable types).
VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "float": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "secret": (str,),
    "array[string]": (list,),
    "array[number]": (list,),
    "array[object]": (list,),
    "array[boolean]": (list,),
    "array[any]": (list,),
}


def snapshot(row: ConversationVariable) -> dict[str, Any]:
    return {
        "id": row.variable_id,
        "name": row.name,
        "value_type": row.value_type,
        "value": row.value,
        "description": row.description,
        "created_at": int(row.created_at.timestamp()),
        "updated_at": int(row.updated_at.timestamp()),
    }


def list_variables(
    session: Session,
    app: App,
    end_user: EndUser,
    conversation_id: str,
    *,
    last_id: str | None,
    limit: int,
    name: str | None,
) -> tuple[list[ConversationVariable], bool]:
    """The conversation's variables (the end user's own conversation: 404 otherwise), in
    declaration order, `limit` after `last_id`."""
    conversations.get_conversation(session, app, end_user, conversation_id)
    query = (
        select(ConversationVariable)
        .where(ConversationVariable.conversation_id == conversation_id)
        .order_by(ConversationVariable.created_at, ConversationVariable.id)
    )
    if name:
        query = query.where(ConversationVariable.name == name)
    rows = list(session.scalars(query))
    if last_id:
        ids = [row.variable_id for row in rows]
        if last_id not in ids:
            raise NotFound(VARIABLE_NOT_FOUND)
        rows = rows[ids.index(last_id) + 1 :]
    return rows[:limit], len(rows) > limit


def update_variable(
    session: Session,
    app: App,
    end_user: EndUser,
    conversation_id: str,
    variable_id: str,
    value: Any,
) -> ConversationVariable:
    """Set one variable's value; it must be of the variable's declared type (400 naming it)."""
    conversations.get_conversation(session, app, end_user, conversation_id)
    row = session.scalars(
        select(ConversationVariable).where(
            ConversationVariable.conversation_id == conversation_id,
            ConversationVariable.variable_id == variable_id,
        )
    ).first()
    if row is None:
        raise NotFound(VARIABLE_NOT_FOUND)
    expected = VALUE_TYPES.get(row.value_type)
    wrong_bool = isinstance(value, bool) and bool not in (expected or ())
    if expected is not None and (not isinstance(value, expected) or wrong_bool):
        raise BadRequest(
            f"value: the variable {row.name} holds {row.value_type}, not {json_type(value)}"
        )
    row.value = value
    row.updated_at = utcnow()
    return row
