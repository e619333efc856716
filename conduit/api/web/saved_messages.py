"""The end user's saved messages (completion apps): list, save, forget."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from conduit.api.deps import DbSession
from conduit.api.v1.schemas import JsonBody, int_query, optional
from conduit.api.web.deps import Caller, completion_app
from conduit.errors import InvalidParam
from conduit.services import saved_messages

router = APIRouter(tags=["web: saved messages"])


@router.get("/saved-messages")
def list_saved_messages(
    caller: Caller,
    session: DbSession,
    last_id: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    app = completion_app(caller)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, has_more = saved_messages.list_saved_messages(
        session, app, caller.end_user, last_id=optional(last_id), limit=page_size
    )
    return {"limit": page_size, "has_more": has_more, "data": items}


@router.post("/saved-messages")
def save_message(caller: Caller, session: DbSession, body: JsonBody) -> dict[str, Any]:
    app = completion_app(caller)
    message_id = body.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidParam("message_id is required")
    saved_messages.save_message(session, app, caller.end_user, message_id)
    return {"result": "success"}


@router.delete("/saved-messages/{message_id}", status_code=204)
def delete_saved_message(message_id: str, caller: Caller, session: DbSession) -> Response:
    app = completion_app(caller)
    saved_messages.delete_saved_message(session, app, caller.end_user, message_id)
    return Response(status_code=204)
