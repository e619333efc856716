"""An app's async runs' tasks as the console shows them: every end user's (the Service API's,
the web app's, the debugger's), newest first, with their callback's delivery state; and one
task's status body (`GET /v1/tasks/{id}`'s). Scoped to the caller's workspace through the
app (another workspace's app or task is a 404); editors and above."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conduit.db.models import AsyncTask, EndUser, Membership, Role, WebhookDelivery
from conduit.errors import InvalidParam, TaskNotFound
from conduit.services.apps import get_app, require_role
from conduit.services.runs import task_store
from conduit.services.runs.tasks import describe

# What a task's status may be: pending and running while its run is at work, then its end.
STATUSES = (*task_store.UNFINISHED, "succeeded", "failed", "stopped")


def parse_status(value: str | None) -> str | None:
    if value in (None, "", "all"):
        return None
    if value not in STATUSES:
        raise InvalidParam(f"status: must be one of {', '.join(STATUSES)}")
    return value


def _unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def list_tasks(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    status: str | None,
    page: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the app's tasks (newest first) and how many there are."""
    require_role(member, Role.EDITOR, "read async tasks")
    app = get_app(session, member.tenant_id, app_id)
    where = [AsyncTask.app_id == app.id]
    if status is not None:
        where.append(AsyncTask.status == status)
    total = session.scalar(select(func.count()).select_from(AsyncTask).where(*where)) or 0
    rows = session.execute(
        select(AsyncTask, EndUser.session_id, WebhookDelivery)
        .outerjoin(EndUser, EndUser.id == AsyncTask.end_user_id)
        .outerjoin(WebhookDelivery, WebhookDelivery.task_id == AsyncTask.id)
        .where(*where)
        .order_by(AsyncTask.created_at.desc(), AsyncTask.id.desc())
        .offset((page - 1) * limit)
        .limit(limit)
    ).all()
    return [_item(task, user, delivery) for task, user, delivery in rows], int(total)


def _item(task: AsyncTask, user: str | None, delivery: WebhookDelivery | None) -> dict[str, Any]:
    callback: dict[str, Any] | None = None
    if delivery is not None:
        callback = {
            "delivery_id": delivery.id,
            "url": delivery.url,
            "status": delivery.status.value,
            "attempts": delivery.attempts,
            "last_status": delivery.last_status,
        }
    elif task.callback_url:  # the run has not ended yet: nothing is queued
        callback = {
            "delivery_id": None,
            "url": task.callback_url,
            "status": "not_sent",
            "attempts": 0,
            "last_status": None,
        }
    return {
        "task_id": task.id,
        "kind": task.kind,
        "user": user,
        "status": task.status,
        "error": task.error_message,
        "created_at": _unix(task.created_at),
        "started_at": _unix(task.started_at),
        "finished_at": _unix(task.finished_at),
        "callback": callback,
    }


def task_view(session: Session, *, member: Membership, app_id: str, task_id: str) -> dict[str, Any]:
    """Any task of the app, as its status request shows it (404 when the app has none)."""
    require_role(member, Role.EDITOR, "read async tasks")
    app = get_app(session, member.tenant_id, app_id)
    task = session.scalars(
        select(AsyncTask).where(AsyncTask.id == task_id, AsyncTask.app_id == app.id)
    ).first()
    if task is None:
        raise TaskNotFound()
    return describe(session, task, app)
