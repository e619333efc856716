"""The Service API's workflow routes: run (blocking or streaming), stop, read a run, follow
or replay its events. The `user` comes in the body (or `?user=`), the app from its key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api import runs as run_controller
from conduit.api.deps import AppCaller, DbSession
from conduit.api.v1.schemas import (
    RESPONSE_MODES,
    callback_url,
    event_position,
    json_body,
    optional,
    required_user,
)
from conduit.api.v1.tasks import status_url
from conduit.errors import InvalidParam
from conduit.services.runs import WorkflowRequest
from conduit.services.runs.workflow import run_view

router = APIRouter(tags=["workflows"])


def workflow_request(body: dict[str, Any], workflow_id: str | None = None) -> WorkflowRequest:
    inputs = body.get("inputs")
    if inputs is None:
        if "inputs" not in body:
            raise InvalidParam("inputs is required")
        inputs = {}
    if not isinstance(inputs, dict):
        raise InvalidParam("inputs must be an object")
    response_mode = body.get("response_mode") or "blocking"
    if response_mode not in RESPONSE_MODES:
        raise InvalidParam("response_mode must be one of blocking, streaming, async")
    files = body.get("files")
    if files is not None and not isinstance(files, list):
        raise InvalidParam("files must be a list")
    return WorkflowRequest(
        inputs=inputs,
        response_mode=response_mode,
        files=files or [],
        workflow_id=workflow_id,
        callback_url=callback_url(body, response_mode),
    )


async def _run(request: Request, caller: AppCaller, workflow_id: str | None) -> Response:
    body = await json_body(request)
    user = required_user(body.get("user"))
    run = workflow_request(body, workflow_id)
    return await run_controller.start_workflow(
        request,
        app=caller.app,
        key_id=caller.key.key_id,
        user=user,
        run=run,
        status_url=status_url(user),
    )


@router.post("/workflows/run", name="run_workflow")
async def run_workflow(request: Request, caller: AppCaller) -> Response:
    """Run the app's published workflow; `response_mode` blocking (JSON) or streaming (SSE)."""
    return await _run(request, caller, None)


@router.post("/workflows/{workflow_id}/run", name="run_workflow_version")
async def run_workflow_version(workflow_id: str, request: Request, caller: AppCaller) -> Response:
    """Run one published version of the app's workflow."""
    return await _run(request, caller, workflow_id)


@router.post("/workflows/tasks/{task_id}/stop", name="stop_workflow")
async def stop_workflow(task_id: str, request: Request, caller: AppCaller) -> dict[str, Any]:
    """Stop the caller's own workflow run: every running node is cancelled at once."""
    body = await json_body(request)
    user = required_user(body.get("user"))
    return await run_controller.stop(request, app=caller.app, user=user, task_id=task_id)


@router.get("/workflows/run/{workflow_run_id}", name="get_workflow_run")
def get_workflow_run(workflow_run_id: str, caller: AppCaller, session: DbSession) -> dict[str, Any]:
    """A run of the app's workflow (`inputs` as a JSON string, as Dify's docs give it)."""
    return run_view(session, caller.app, workflow_run_id)


@router.get("/workflow/{workflow_run_id}/events", name="workflow_run_events")
async def workflow_run_events(
    workflow_run_id: str,
    request: Request,
    caller: AppCaller,
    user: Annotated[str | None, Query()] = None,
    after: Annotated[str | None, Query()] = None,
) -> Response:
    """Replay the run's events after `after` / `Last-Event-ID`, then follow it live; a run
    whose events expired gives its `workflow_finished` alone."""
    owner = required_user(optional(user))
    position = event_position(after, request.headers.get("last-event-id"))
    return await run_controller.resume_workflow(
        request, app=caller.app, user=owner, workflow_run_id=workflow_run_id, after=position
    )
