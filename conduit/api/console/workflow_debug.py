"""The debugger of workflow and chatflow apps: run the draft (streaming, as the signed-in
account, through the run controller every tier shares), stop it, and run one node alone."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from conduit.api import runs as run_controller
from conduit.api.console.app_runs import Caller, stop_as_caller
from conduit.api.v1.schemas import event_position, json_body, run_request
from conduit.api.v1.workflows import workflow_request
from conduit.errors import InvalidParam
from conduit.services.runs.workflow import single_node_run

router = APIRouter(prefix="/apps", tags=["console: workflow debugging"])


def _task_url(app_id: str) -> Any:
    return lambda task_id: f"/console/api/apps/{app_id}/tasks/{task_id}"


@router.post("/{app_id}/workflows/draft/run")
async def run_draft(request: Request, caller: Caller) -> Response:
    """Run the draft workflow with `inputs` (streaming unless `response_mode` says otherwise):
    each node's events as they happen."""
    body = await json_body(request)
    body.setdefault("response_mode", "streaming")
    run = workflow_request(body)
    run.draft = True
    return await run_controller.start_workflow(
        request,
        app=caller.app,
        key_id=None,
        user=caller.user,
        run=run,
        status_url=_task_url(caller.app.id),
    )


@router.post("/{app_id}/advanced-chat/workflows/draft/run")
async def run_chatflow_draft(request: Request, caller: Caller) -> Response:
    """A chatflow's turn on its draft workflow (the Service API's chat body, no `user`)."""
    body = await json_body(request)
    if body.get("response_mode") in (None, ""):
        body["response_mode"] = "streaming"
    run = run_request(body, mode="chat")
    run.draft = True
    return await run_controller.start_chat(
        request,
        app=caller.app,
        key_id=None,
        user=caller.user,
        run=run,
        status_url=_task_url(caller.app.id),
    )


@router.post("/{app_id}/workflow-runs/tasks/{task_id}/stop")
async def stop_draft_run(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    return await stop_as_caller(request, caller, task_id)


@router.get("/{app_id}/workflow-runs/{workflow_run_id}/events")
async def resume_draft_run(
    workflow_run_id: str,
    request: Request,
    caller: Caller,
    after: Annotated[str | None, Query(description="Or the Last-Event-ID header.")] = None,
) -> Response:
    """The signed-in account's draft run: its events after `after` / `Last-Event-ID` (from its
    first one without), then live; another account's run is a 404."""
    position = event_position(after, request.headers.get("last-event-id"))
    return await run_controller.resume_workflow(
        request,
        app=caller.app,
        user=caller.user,
        workflow_run_id=workflow_run_id,
        after=position,
    )


@router.post("/{app_id}/workflows/draft/nodes/{node_id}/run")
async def run_draft_node(node_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """Run one node of the draft alone; `inputs` maps what it reads (`"#node.var#"` or
    `"node.var"`, or a start input's name) to values. Its execution, `failed` with the error
    when it failed; nothing is stored."""
    body = await json_body(request)
    values = body.get("inputs") or {}
    if not isinstance(values, dict):
        raise InvalidParam("inputs must be an object")
    return await single_node_run(
        run_controller.runs_of(request),
        app=caller.app,
        user=caller.user,
        node_id=node_id,
        values=values,
    )
