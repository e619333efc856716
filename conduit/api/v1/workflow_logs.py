"""`GET /v1/workflows/logs`: the app's ended workflow runs, page by page, newest first, with
Dify's filters (keyword, status, creation time, who started them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.deps import AppCaller, DbSession
from conduit.api.v1.schemas import int_query, optional
from conduit.errors import InvalidParam
from conduit.services import workflow_logs
from conduit.services.workflow_logs import LogQuery

router = APIRouter(tags=["workflows"])
Text = Annotated[str | None, Query()]


def iso_query(name: str, raw: str | None) -> datetime | None:
    """An ISO 8601 date-time (a naive one is UTC), or None when absent."""
    value = optional(raw)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParam(f"{name} must be an ISO 8601 date-time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@router.get("/workflows/logs", name="workflow_logs")
def list_workflow_logs(
    caller: AppCaller,
    session: DbSession,
    keyword: Text = None,
    status: Text = None,
    page: Text = None,
    limit: Text = None,
    created_at__before: Text = None,
    created_at__after: Text = None,
    created_by_end_user_session_id: Text = None,
    created_by_account: Text = None,
) -> dict[str, Any]:
    """The runs' logs: `{page, limit, total, has_more, data}` (a 400 names a bad parameter)."""
    query = LogQuery(
        page=int_query("page", page, default=1, low=1, high=99999),
        limit=int_query("limit", limit, default=20, low=1, high=100),
        keyword=optional(keyword),
        status=optional(status),
        created_before=iso_query("created_at__before", created_at__before),
        created_after=iso_query("created_at__after", created_at__after),
        end_user_session_id=optional(created_by_end_user_session_id),
        account_email=optional(created_by_account),
    )
    rows, total = workflow_logs.list_workflow_logs(session, caller.app, query)
    return {
        "page": query.page,
        "limit": query.limit,
        "total": total,
        "has_more": query.page * query.limit < total,
        "data": [workflow_logs.log_view(row) for row in rows],
    }
