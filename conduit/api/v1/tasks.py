"""Async runs' tasks on the Service API: `GET /v1/tasks/{task_id}?user=…` (the app's key, the
run's own user). Poll it from 1 s, backing off to 5 s; or take the callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request

from conduit.api.deps import AppCaller
from conduit.api.runs import runs_of
from conduit.api.v1.schemas import optional, required_user
from conduit.services import runs as run_service

router = APIRouter(tags=["tasks"])


def status_url(user: str) -> Callable[[str], str]:
    """Where the Service API's caller polls a task of `user`'s."""

    def url(task_id: str) -> str:
        return f"/v1/tasks/{task_id}?user={quote(user, safe='')}"

    return url


@router.get("/tasks/{task_id}", name="get_task")
async def get_task(
    task_id: str,
    request: Request,
    caller: AppCaller,
    user: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """The async run's status and, once it ended, its result (the blocking-mode body) or its
    error, with its callback's deliveries. 404 for another app's or user's task, and
    `task_expired` for one removed after its retention."""
    owner = required_user(optional(user))
    return await run_service.task_view(
        runs_of(request), app=caller.app, user=owner, task_id=task_id
    )
