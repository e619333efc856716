"""An app's async runs' tasks in the console: every end user's, paged and filtered by status,
with their callback's state; and one task's status body (what its `status_url` points at)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.responses import page_body
from conduit.services import app_tasks

router = APIRouter(prefix="/apps/{app_id}", tags=["console: async tasks"])


@router.get("/tasks")
def list_tasks(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    status: Annotated[
        str | None,
        Query(description="pending, running, succeeded, failed or stopped; all by default."),
    ] = None,
    page: Annotated[str | None, Query(description="Page number, from 1.")] = None,
    limit: Annotated[str | None, Query(description="Items per page, 1–100.")] = None,
) -> dict[str, Any]:
    page_number = int_param("page", page, default=1, low=1, high=100_000)
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    items, total = app_tasks.list_tasks(
        session,
        member=identity.membership,
        app_id=app_id,
        status=app_tasks.parse_status(status),
        page=page_number,
        limit=page_size,
    )
    return page_body(items, page=page_number, limit=page_size, total=total)


@router.get("/tasks/{task_id}")
def get_task(
    app_id: str, task_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """Any task of the app (the debugger's, the Service API's, the web app's): its status,
    times, callback, and once it ended its result or error."""
    return app_tasks.task_view(session, member=identity.membership, app_id=app_id, task_id=task_id)
