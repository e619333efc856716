"""The Service API's run routes, for chat and completion: start, stop, resume. The `user`
comes in the body (or `?user=`), the app from its key; the rest is `api/runs.py`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api import runs as run_controller
from conduit.api.deps import AppCaller, ServiceCaller, get_service_caller
from conduit.api.v1.schemas import (
    event_position,
    json_body,
    optional,
    required_user,
    run_request,
)
from conduit.api.v1.tasks import status_url


async def create_run(request: Request, caller: ServiceCaller, *, mode: str) -> Response:
    body = await json_body(request)
    user = required_user(body.get("user"))  # Dify checks `user` before anything else
    run = run_request(body, mode=mode)
    return await run_controller.start_chat(
        request,
        app=caller.app,
        key_id=caller.key.key_id,
        user=user,
        run=run,
        status_url=status_url(user),
    )


def run_routes(path: str, mode: str, tag: str) -> APIRouter:
    """POST /{path}, POST /{path}/{task_id}/stop and GET /{path}/{task_id}/events."""
    router = APIRouter(tags=[tag])

    async def start_plain(request: Request) -> Response:
        return await create_run(request, await get_service_caller(request), mode=mode)

    @router.post(f"/{path}", name=f"create_{mode}_message")
    @run_controller.plain_endpoint(start_plain)
    async def create(request: Request, caller: AppCaller) -> Response:
        """Start a run; `response_mode` blocking (JSON), streaming (SSE) or async (202, then
        `GET /v1/tasks/{task_id}` or the `callback_url`)."""
        return await create_run(request, caller, mode=mode)

    @router.post(f"/{path}/{{task_id}}/stop", name=f"stop_{mode}_message")
    async def stop_run(task_id: str, request: Request, caller: AppCaller) -> dict[str, Any]:
        """Stop the caller's own run (`stopped` says whether one was stopped)."""
        body = await json_body(request)
        user = required_user(body.get("user"))
        return await run_controller.stop(request, app=caller.app, user=user, task_id=task_id)

    @router.get(f"/{path}/{{task_id}}/events", name=f"resume_{mode}_message")
    async def resume(
        task_id: str,
        request: Request,
        caller: AppCaller,
        user: Annotated[str | None, Query()] = None,
        after: Annotated[str | None, Query()] = None,
    ) -> Response:
        """Replay the run's events after `after` / `Last-Event-ID`, then follow it live."""
        owner = required_user(optional(user))
        position = event_position(after, request.headers.get("last-event-id"))
        return await run_controller.resume(
            request, app=caller.app, user=owner, task_id=task_id, after=position
        )

    return router
