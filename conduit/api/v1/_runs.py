"""The HTTP side of runs, shared by chat and completion: streaming, blocking, resume, stop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api.deps import AppCaller, ServiceCaller, get_service_caller
from conduit.api.errors import envelope
from conduit.api.responses import OrjsonResponse
from conduit.api.sse import EventStreamResponse, event_stream
from conduit.api.v1.schemas import event_position, json_body, optional, required_user, run_request
from conduit.services import runs
from conduit.services.runs import RunContext


def run_context(request: Request) -> RunContext:
    context: RunContext = request.app.state.run_context
    return context


async def create_run(request: Request, caller: ServiceCaller, *, mode: str) -> Response:
    body = await json_body(request)
    user = required_user(body.get("user"))  # Dify checks `user` before anything else
    run = run_request(body, mode=mode)
    context = run_context(request)
    spec = await runs.start_run(
        context, app=caller.app, key_id=caller.key.key_id, user=user, request=run
    )
    log = context.env.eventlog
    if run.response_mode == "streaming":
        return EventStreamResponse(
            event_stream(log, spec.task_id, ping_interval=context.settings.runs.ping_interval)
        )
    return await blocking_response(log.follow(spec.task_id), mode=caller.app.mode.value)


async def blocking_response(events: Any, *, mode: str) -> Response:
    """Read the run to its end; Dify's blocking JSON, or its error as an HTTP error."""
    answer: list[str] = []
    async for event in events:
        payload = event.payload
        if event.event == "message":
            answer.append(str(payload.get("answer", "")))
        elif event.event == "message_replace":
            answer = [str(payload.get("answer", ""))]
        elif event.event == "message_end":
            body: dict[str, Any] = {
                "event": "message",
                "task_id": payload["task_id"],
                "id": payload["message_id"],
                "message_id": payload["message_id"],
            }
            if "conversation_id" in payload:
                body["conversation_id"] = payload["conversation_id"]
            body.update(
                {
                    "mode": mode,
                    "answer": "".join(answer),
                    "metadata": payload.get("metadata", {}),
                    "created_at": payload["created_at"],
                }
            )
            return OrjsonResponse(body)
        elif event.event == "error":
            return envelope(str(payload["code"]), str(payload["message"]), int(payload["status"]))
    return envelope("internal_server_error", "The run ended without a result.", 500)


async def resume_run(
    request: Request, caller: ServiceCaller, task_id: str, user: str | None, after: str | None
) -> Response:
    """Replay the events after `Last-Event-ID` (or `?after=`) exactly once, then follow live."""
    owner = required_user(optional(user))
    position = event_position(after, request.headers.get("last-event-id"))
    context = run_context(request)
    await runs.resumable_owner_check(context, app=caller.app, user=owner, task_id=task_id)
    return EventStreamResponse(
        event_stream(
            context.env.eventlog,
            task_id,
            after=position,
            ping_interval=context.settings.runs.ping_interval,
        )
    )


async def stop(request: Request, caller: ServiceCaller, task_id: str) -> dict[str, Any]:
    body = await json_body(request)
    user = required_user(body.get("user"))
    stopped = await runs.stop_run(run_context(request), app=caller.app, user=user, task_id=task_id)
    return {"result": "success", "stopped": stopped}


def hot_start(mode: str) -> Callable[[Request], Awaitable[Response]]:
    """`create` below without FastAPI's routing (see `conduit.api.hot_routes`)."""

    async def start(request: Request) -> Response:
        return await create_run(request, await get_service_caller(request), mode=mode)

    return start


def run_routes(path: str, mode: str, tag: str) -> APIRouter:
    """POST /{path}, POST /{path}/{task_id}/stop and GET /{path}/{task_id}/events."""
    router = APIRouter(tags=[tag])

    @router.post(f"/{path}", name=f"create_{mode}_message")
    async def create(request: Request, caller: AppCaller) -> Response:
        """Start a run; `response_mode` blocking (JSON) or streaming (SSE)."""
        return await create_run(request, caller, mode=mode)

    @router.post(f"/{path}/{{task_id}}/stop", name=f"stop_{mode}_message")
    async def stop_run(task_id: str, request: Request, caller: AppCaller) -> dict[str, Any]:
        """Stop the caller's own run (`stopped` says whether one was stopped)."""
        return await stop(request, caller, task_id)

    @router.get(f"/{path}/{{task_id}}/events", name=f"resume_{mode}_message")
    async def resume(
        task_id: str,
        request: Request,
        caller: AppCaller,
        user: Annotated[str | None, Query()] = None,
        after: Annotated[str | None, Query()] = None,
    ) -> Response:
        """Replay the run's events after `after` / `Last-Event-ID`, then follow it live."""
        return await resume_run(request, caller, task_id, user, after)

    return router
