"""A chat or completion app's logs (Dify's console routes): its conversations, a
conversation's messages, and daily statistics. Editors and above, in the app's workspace
(another workspace's app is a 404); bad parameters are a 400 naming them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.files import Links
from conduit.services import app_logs

router = APIRouter(prefix="/apps", tags=["console: app logs"])

Text = Annotated[str | None, Query()]


def _times(start: str | None, end: str | None) -> app_logs.TimeRange:
    return app_logs.TimeRange(
        app_logs.parse_time("start", start), app_logs.parse_time("end", end, end=True)
    ).check()


def _conversations(
    identity: CurrentIdentity,
    session: DbSession,
    app_id: str,
    *,
    completion: bool,
    keyword: str | None,
    start: str | None,
    end: str | None,
    sort_by: str | None,
    page: str | None,
    limit: str | None,
) -> dict[str, Any]:
    query = app_logs.ConversationQuery(
        page=int_param("page", page, default=1, low=1, high=99999),
        limit=int_param("limit", limit, default=20, low=1, high=100),
        keyword=keyword or None,
        times=_times(start, end),
        sort_by=sort_by or "-created_at",
    )
    items, total = app_logs.list_conversations(
        session, member=identity.membership, app_id=app_id, completion=completion, query=query
    )
    return {
        "page": query.page,
        "limit": query.limit,
        "total": total,
        "has_more": query.page * query.limit < total,
        "data": items,
    }


@router.get("/{app_id}/chat-conversations")
def list_chat_conversations(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    keyword: Text = None,
    start: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM (UTC)")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM (UTC)")] = None,
    sort_by: Annotated[str | None, Query(description="[-]created_at or [-]updated_at")] = None,
    page: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    """A chat app's conversations, newest first, one page (Dify's fields and filters)."""
    return _conversations(
        identity,
        session,
        app_id,
        completion=False,
        keyword=keyword,
        start=start,
        end=end,
        sort_by=sort_by,
        page=page,
        limit=limit,
    )


@router.get("/{app_id}/completion-conversations")
def list_completion_conversations(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    keyword: Text = None,
    start: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM (UTC)")] = None,
    end: Annotated[str | None, Query(description="YYYY-MM-DD HH:MM (UTC)")] = None,
    sort_by: Annotated[str | None, Query(description="[-]created_at or [-]updated_at")] = None,
    page: Text = None,
    limit: Text = None,
) -> dict[str, Any]:
    """A completion app's runs (one conversation each, with its `message`), one page."""
    return _conversations(
        identity,
        session,
        app_id,
        completion=True,
        keyword=keyword,
        start=start,
        end=end,
        sort_by=sort_by,
        page=page,
        limit=limit,
    )


@router.get("/{app_id}/chat-messages")
def list_chat_messages(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    links: Links,
    conversation_id: Text = None,
    first_id: Annotated[str | None, Query(description="The oldest message already shown.")] = None,
    limit: Text = None,
) -> dict[str, Any]:
    """A conversation's messages, oldest first: the latest `limit`, or those before
    `first_id`."""
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    items, has_more = app_logs.list_messages(
        session,
        member=identity.membership,
        app_id=app_id,
        conversation_id=conversation_id,
        first_id=first_id or None,
        limit=page_size,
        link=links.preview,
    )
    return {"limit": page_size, "has_more": has_more, "data": items}


def _statistics(
    kind: str, app_id: str, identity: CurrentIdentity, session: DbSession, start: Any, end: Any
) -> dict[str, Any]:
    rows = app_logs.statistics(
        session,
        member=identity.membership,
        app_id=app_id,
        kind=kind,
        times=_times(start, end),
    )
    return {"data": rows}


@router.get("/{app_id}/statistics/daily-messages")
def daily_messages(
    app_id: str, identity: CurrentIdentity, session: DbSession, start: Text = None, end: Text = None
) -> dict[str, Any]:
    """Messages per UTC day between `start` and `end` (YYYY-MM-DD HH:MM)."""
    return _statistics("daily-messages", app_id, identity, session, start, end)


@router.get("/{app_id}/statistics/token-costs")
def token_costs(
    app_id: str, identity: CurrentIdentity, session: DbSession, start: Text = None, end: Text = None
) -> dict[str, Any]:
    """Tokens and price per UTC day between `start` and `end`."""
    return _statistics("token-costs", app_id, identity, session, start, end)


@router.get("/{app_id}/statistics/average-response-time")
def average_response_time(
    app_id: str, identity: CurrentIdentity, session: DbSession, start: Text = None, end: Text = None
) -> dict[str, Any]:
    """The model's average latency (ms) per UTC day between `start` and `end`."""
    return _statistics("average-response-time", app_id, identity, session, start, end)
