"""The web tier's runs: chat, completion and workflow (start, stop, resume), and async tasks.
The end user comes from the passport (type "browser"); streams and blocking replies go
through Dify's simple converter (`api/sse.py`). Each start counts against the end user's
request rate (`CONDUIT_WEBAPP_REQUESTS_PER_MINUTE_PER_END_USER`: 429 `rate_limit_error`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api import runs as run_controller
from conduit.api.deps import get_settings
from conduit.api.v1.schemas import event_position, json_body, optional_json_body, run_request
from conduit.api.v1.workflows import workflow_request
from conduit.api.web.deps import Caller, chat_app, completion_app
from conduit.db.models import AppMode
from conduit.errors import InvalidParam, NotWorkflowApp
from conduit.services import runs as run_service
from conduit.services import web_passport
from conduit.services.end_users import BROWSER
from conduit.services.web_passport import WebCaller

router = APIRouter(tags=["web: runs"])


def status_url(task_id: str) -> str:
    return f"/api/tasks/{task_id}"


async def count_request(request: Request, caller: WebCaller) -> None:
    """One more generation request of the caller's end user (429 beyond their rate)."""
    per_minute = get_settings(request).webapp.requests_per_minute_per_end_user
    limiter = run_controller.runs_of(request).backends.limiter
    await web_passport.count_request(limiter, per_minute, caller)


async def web_body(request: Request) -> dict[str, Any]:
    """A run's JSON body; no `user` (the passport names the end user) and no callback (an
    end user's browser has no server to call back)."""
    body = await json_body(request)
    if "callback_url" in body:
        raise InvalidParam("callback_url is not accepted by the web API")
    body.pop("user", None)
    return body


async def start_chat(
    request: Request, caller: WebCaller, body: dict[str, Any], mode: str
) -> Response:
    run = run_request(body, mode=mode)
    return await run_controller.start_chat(
        request,
        app=caller.app,
        key_id=None,
        user=caller.user,
        user_type=BROWSER,
        run=run,
        status_url=status_url,
        simple=True,
    )


def _chat_routes(path: str, mode: str, check: Callable[[WebCaller], Any]) -> None:
    @router.post(f"/{path}", name=f"web_create_{mode}_message")
    async def create(request: Request, caller: Caller) -> Response:
        """Start a run: `response_mode` streaming (SSE), blocking (JSON) or async (202)."""
        check(caller)
        await count_request(request, caller)
        return await start_chat(request, caller, await web_body(request), mode)

    @router.post(f"/{path}/{{task_id}}/stop", name=f"web_stop_{mode}_message")
    async def stop(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
        """Stop the end user's own run (another's: nothing is stopped)."""
        check(caller)
        await optional_json_body(request)
        return await run_controller.stop(
            request, app=caller.app, user=caller.user, user_type=BROWSER, task_id=task_id
        )

    @router.get(f"/{path}/{{task_id}}/events", name=f"web_resume_{mode}_message")
    async def resume(
        task_id: str,
        request: Request,
        caller: Caller,
        after: Annotated[str | None, Query()] = None,
    ) -> Response:
        """The run's events after `after` / `Last-Event-ID`, then live (404: not theirs)."""
        check(caller)
        position = event_position(after, request.headers.get("last-event-id"))
        return await run_controller.resume(
            request,
            app=caller.app,
            user=caller.user,
            user_type=BROWSER,
            task_id=task_id,
            after=position,
            simple=True,
        )


_chat_routes("chat-messages", "chat", chat_app)
_chat_routes("completion-messages", "completion", completion_app)


def _workflow_app(caller: WebCaller) -> None:
    if caller.app.mode != AppMode.WORKFLOW:
        raise NotWorkflowApp()


@router.post("/workflows/run", name="web_run_workflow")
async def run_workflow(request: Request, caller: Caller) -> Response:
    """Run the app's published workflow (streaming, blocking or async)."""
    _workflow_app(caller)
    await count_request(request, caller)
    run = workflow_request(await web_body(request))
    return await run_controller.start_workflow(
        request,
        app=caller.app,
        key_id=None,
        user=caller.user,
        user_type=BROWSER,
        run=run,
        status_url=status_url,
        simple=True,
    )


@router.post("/workflows/tasks/{task_id}/stop", name="web_stop_workflow")
async def stop_workflow(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    _workflow_app(caller)
    await optional_json_body(request)
    return await run_controller.stop(
        request, app=caller.app, user=caller.user, user_type=BROWSER, task_id=task_id
    )


@router.get("/workflow/{workflow_run_id}/events", name="web_workflow_run_events")
async def workflow_run_events(
    workflow_run_id: str,
    request: Request,
    caller: Caller,
    after: Annotated[str | None, Query()] = None,
) -> Response:
    """A workflow run's events after `after` / `Last-Event-ID`, then live."""
    _workflow_app(caller)
    position = event_position(after, request.headers.get("last-event-id"))
    return await run_controller.resume_workflow(
        request,
        app=caller.app,
        user=caller.user,
        user_type=BROWSER,
        workflow_run_id=workflow_run_id,
        after=position,
        simple=True,
    )


@router.get("/tasks/{task_id}", name="web_get_task")
async def get_task(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """The end user's async run: status and, once ended, its result or error (404 for
    another's)."""
    return await run_service.task_view(
        run_controller.runs_of(request),
        app=caller.app,
        user=caller.user,
        user_type=BROWSER,
        task_id=task_id,
    )
