"""The end user's messages: list, feedback, suggested questions (chat-family apps), and
more-like-this (completion apps)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api.deps import DbSession, get_resources
from conduit.api.files import Links
from conduit.api.runs import runs_of
from conduit.api.v1.schemas import JsonBody, int_query, optional
from conduit.api.web.deps import Caller, chat_app, completion_app
from conduit.api.web.runs import count_request, start_chat
from conduit.errors import AppMoreLikeThisDisabled, InvalidParam, SuggestedQuestionsDisabled
from conduit.services import messages, suggestions
from conduit.services.end_users import BROWSER

router = APIRouter(tags=["web: messages"])
Text = Annotated[str | None, Query()]
# What Dify's web `message_fields` leave out of the Service API's message.
_SERVICE_ONLY = (
    "message_tokens",
    "answer_tokens",
    "total_tokens",
    "provider_response_latency",
    "total_price",
    "currency",
)


@router.get("/messages")
def list_messages(
    caller: Caller,
    session: DbSession,
    links: Links,
    conversation_id: Text = None,
    first_id: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    """A conversation's messages, oldest first (before `first_id`)."""
    app = chat_app(caller)
    if conversation_id is None:
        raise InvalidParam("conversation_id is required")
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, has_more = messages.list_messages(
        session,
        app,
        caller.end_user,
        conversation_id=optional(conversation_id),
        first_id=optional(first_id),
        limit=page_size,
        link=links.preview,
    )
    data = [{k: v for k, v in item.items() if k not in _SERVICE_ONLY} for item in items]
    return {"limit": page_size, "has_more": has_more, "data": data}


@router.post("/messages/{message_id}/feedbacks")
def message_feedback(
    message_id: str, caller: Caller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    rating = body.get("rating")
    content = body.get("content")
    if rating is not None and not isinstance(rating, str):
        raise InvalidParam("rating must be like, dislike or null")
    if content is not None and not isinstance(content, str):
        raise InvalidParam("content must be a string")
    messages.set_feedback(
        session, caller.app, caller.end_user, message_id, rating=rating, content=content
    )
    return {"result": "success"}


@router.get("/messages/{message_id}/suggested-questions")
async def suggested_questions(message_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Follow-up questions for an answer; 403 when the app does not enable them."""
    app = chat_app(caller)
    questions = await suggestions.suggest(
        runs_of(request),
        app=app,
        user=caller.user,
        user_type=BROWSER,
        message_id=message_id,
        disabled=SuggestedQuestionsDisabled(),
    )
    return {"data": questions}


@router.get("/messages/{message_id}/more-like-this")
async def more_like_this(
    message_id: str,
    request: Request,
    caller: Caller,
    response_mode: Text = None,
) -> Response:
    """Another completion of the message's inputs (when the app enables `more_like_this`):
    Dify's order, the app's mode, the message (404), then the feature (403)."""
    app = completion_app(caller)
    if response_mode not in ("blocking", "streaming"):
        raise InvalidParam("response_mode must be blocking or streaming")

    def original() -> dict[str, Any]:
        with get_resources(request).db.sessions() as session:
            message = messages.get_message(session, app, caller.end_user, message_id)
            return {"inputs": dict(message.inputs or {}), "query": message.query}

    body = await asyncio.to_thread(original)
    feature = (app.model_config_ or {}).get("more_like_this")
    if not (isinstance(feature, dict) and feature.get("enabled")):
        raise AppMoreLikeThisDisabled()
    await count_request(request, caller)
    return await start_chat(request, caller, {**body, "response_mode": response_mode}, "completion")
