"""Conversations, messages and feedback of the Service API (chat-family apps)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api.deps import AppCaller, DbSession
from conduit.api.files import Links
from conduit.api.runs import runs_of
from conduit.api.v1.schemas import (
    JsonBody,
    OptionalJsonBody,
    int_query,
    json_body,
    optional,
    optional_user,
    required_user,
)
from conduit.db.models import App, AppMode, EndUser
from conduit.errors import InvalidParam, NotChatApp
from conduit.services import conversation_variables, conversations, messages, naming, suggestions
from conduit.services.end_users import get_or_create_end_user

router = APIRouter(tags=["service: conversations"])
CHAT_FAMILY = (AppMode.CHAT, AppMode.AGENT_CHAT, AppMode.ADVANCED_CHAT)
Text = Annotated[str | None, Query()]


def _chat_app(app: App) -> App:
    if app.mode not in CHAT_FAMILY:
        raise NotChatApp()
    return app


def _end_user(session: DbSession, app: App, user: Any) -> EndUser:
    """The end user of a `user` that may be absent (a query value, or a body's)."""
    return get_or_create_end_user(session, app, optional_user(user))


@router.get("/conversations")
def list_conversations(
    caller: AppCaller,
    session: DbSession,
    user: Text = None,
    last_id: Text = None,
    limit: Text = None,
    sort_by: Text = None,
    pinned: Text = None,
) -> dict[str, Any]:
    """Infinite scroll; `pinned` is accepted and ignored (SDKs still send it)."""
    app = _chat_app(caller.app)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, has_more = conversations.list_conversations(
        session,
        app,
        _end_user(session, app, user),
        last_id=optional(last_id),
        limit=page_size,
        sort_by=optional(sort_by) or "-updated_at",
    )
    return {
        "limit": page_size,
        "has_more": has_more,
        "data": [conversations.snapshot(c) for c in items],
    }


@router.post("/conversations/{conversation_id}/name")
async def rename_conversation(
    conversation_id: str, request: Request, caller: AppCaller
) -> dict[str, Any]:
    """Rename; with `auto_generate` the model names it from the first question."""
    app = _chat_app(caller.app)
    body = await json_body(request)
    name, auto_generate = rename_fields(body)
    context = runs_of(request)
    return await naming.rename(
        context,
        app=app,
        user=optional_user(body.get("user")),
        conversation_id=conversation_id,
        name=name,
        auto_generate=auto_generate,
    )


def rename_fields(body: dict[str, Any]) -> tuple[str | None, bool]:
    """A rename body's `name` and `auto_generate` (a name is required without the latter)."""
    name = body.get("name")
    auto_generate = body.get("auto_generate", False)
    if not isinstance(auto_generate, bool):
        raise InvalidParam("auto_generate must be a boolean")
    if not auto_generate and (not isinstance(name, str) or not name.strip()):
        raise InvalidParam("name is required when auto_generate is false")
    return (name if isinstance(name, str) else None), auto_generate


@router.delete("/conversations/{conversation_id}", status_code=204)
def delete_conversation(
    conversation_id: str, caller: AppCaller, session: DbSession, body: OptionalJsonBody
) -> Response:
    app = _chat_app(caller.app)
    end_user = _end_user(session, app, body.get("user"))
    conversations.delete_conversation(session, app, end_user, conversation_id)
    return Response(status_code=204)


@router.get("/messages")
def list_messages(
    caller: AppCaller,
    session: DbSession,
    links: Links,
    conversation_id: Text = None,
    user: Text = None,
    first_id: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    """Dify's rules: `conversation_id` is required, and an empty one is an empty page."""
    app = _chat_app(caller.app)
    if conversation_id is None:
        raise InvalidParam("conversation_id is required")
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, has_more = messages.list_messages(
        session,
        app,
        _end_user(session, app, user),
        conversation_id=optional(conversation_id),
        first_id=optional(first_id),
        limit=page_size,
        link=links.preview,
    )
    return {"limit": page_size, "has_more": has_more, "data": items}


@router.post("/messages/{message_id}/feedbacks")
def message_feedback(
    message_id: str, caller: AppCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    user = required_user(body.get("user"))
    rating = body.get("rating")
    content = body.get("content")
    if rating is not None and not isinstance(rating, str):
        raise InvalidParam("rating must be like, dislike or null")
    if content is not None and not isinstance(content, str):
        raise InvalidParam("content must be a string")
    app = caller.app
    messages.set_feedback(
        session, app, _end_user(session, app, user), message_id, rating=rating, content=content
    )
    return {"result": "success"}


@router.get("/app/feedbacks")
def app_feedbacks(
    caller: AppCaller, session: DbSession, page: Text = None, limit: Text = None
) -> dict[str, Any]:
    page_number = int_query("page", page, default=1, low=1, high=99999)
    page_size = int_query("limit", limit, default=20, low=1, high=101)
    return {
        "data": messages.list_app_feedbacks(session, caller.app, page=page_number, limit=page_size)
    }


@router.get("/messages/{message_id}/suggested")
async def suggested_questions(
    message_id: str, request: Request, caller: AppCaller, user: Text = None
) -> dict[str, Any]:
    """Follow-up questions for an answer (when the app enables them). Dify's order: the user,
    the app's mode, the message, then the feature."""
    owner = required_user(optional(user))
    app = _chat_app(caller.app)
    questions = await suggestions.suggest(
        runs_of(request), app=app, user=owner, message_id=message_id
    )
    return {"result": "success", "data": questions}


@router.get("/conversations/{conversation_id}/variables")
def list_conversation_variables(
    conversation_id: str,
    caller: AppCaller,
    session: DbSession,
    user: Text = None,
    last_id: Text = None,
    limit: Text = None,
    variable_name: Text = None,
) -> dict[str, Any]:
    """A chatflow conversation's variables, as its turns left them."""
    app = _chat_app(caller.app)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    rows, has_more = conversation_variables.list_variables(
        session,
        app,
        _end_user(session, app, user),
        conversation_id,
        last_id=optional(last_id),
        limit=page_size,
        name=optional(variable_name),
    )
    return {
        "limit": page_size,
        "has_more": has_more,
        "data": [conversation_variables.snapshot(row) for row in rows],
    }


# PUT is Dify's; its SDK once sent PATCH, so both are taken.
@router.put("/conversations/{conversation_id}/variables/{variable_id}")
@router.patch("/conversations/{conversation_id}/variables/{variable_id}")
def update_conversation_variable(
    conversation_id: str, variable_id: str, caller: AppCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    """Set a conversation variable's value (of its declared type); the next turn sees it."""
    app = _chat_app(caller.app)
    if "value" not in body:
        raise InvalidParam("value is required")
    row = conversation_variables.update_variable(
        session,
        app,
        _end_user(session, app, body.get("user")),
        conversation_id,
        variable_id,
        body["value"],
    )
    session.flush()
    return conversation_variables.snapshot(row)
