"""The end user's conversations (chat-family apps): list (with `pinned`), rename, delete,
pin, unpin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api.deps import DbSession
from conduit.api.runs import runs_of
from conduit.api.v1.conversations import rename_fields
from conduit.api.v1.schemas import int_query, json_body, optional, optional_json_body
from conduit.api.web.deps import Caller, chat_app
from conduit.errors import InvalidParam
from conduit.services import conversations, naming
from conduit.services.end_users import BROWSER

router = APIRouter(tags=["web: conversations"])
Text = Annotated[str | None, Query()]


def _pinned(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidParam("pinned must be true or false")


@router.get("/conversations")
def list_conversations(
    caller: Caller,
    session: DbSession,
    last_id: Text = None,
    limit: Text = None,
    pinned: Text = None,
    sort_by: Text = None,
) -> dict[str, Any]:
    """Infinite scroll of the end user's conversations; `pinned=true|false` filters them."""
    app = chat_app(caller)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, has_more = conversations.list_conversations(
        session,
        app,
        caller.end_user,
        last_id=optional(last_id),
        limit=page_size,
        sort_by=optional(sort_by) or "-updated_at",
        pinned=_pinned(pinned),
    )
    return {
        "limit": page_size,
        "has_more": has_more,
        "data": [conversations.snapshot(c) for c in items],
    }


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(
    conversation_id: str, request: Request, caller: Caller, session: DbSession
) -> Response:
    app = chat_app(caller)
    await optional_json_body(request)
    conversations.delete_conversation(session, app, caller.end_user, conversation_id)
    return Response(status_code=204)


@router.post("/conversations/{conversation_id}/name")
async def rename_conversation(
    conversation_id: str, request: Request, caller: Caller
) -> dict[str, Any]:
    """Rename; with `auto_generate` the model names it from the first question."""
    app = chat_app(caller)
    name, auto_generate = rename_fields(await json_body(request))
    return await naming.rename(
        runs_of(request),
        app=app,
        user=caller.user,
        user_type=BROWSER,
        conversation_id=conversation_id,
        name=name,
        auto_generate=auto_generate,
    )


@router.patch("/conversations/{conversation_id}/pin")
def pin_conversation(conversation_id: str, caller: Caller, session: DbSession) -> dict[str, Any]:
    conversations.pin_conversation(session, chat_app(caller), caller.end_user, conversation_id)
    return {"result": "success"}


@router.patch("/conversations/{conversation_id}/unpin")
def unpin_conversation(conversation_id: str, caller: Caller, session: DbSession) -> dict[str, Any]:
    conversations.unpin_conversation(session, chat_app(caller), caller.end_user, conversation_id)
    return {"result": "success"}
