"""An app's orchestration page: its model config and the debugger (chat and completion runs
as the signed-in account, through the run controller every tier shares, `api/runs.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.responses import Response

from conduit.api import runs as run_controller
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.v1.audio import speak_as, transcribed
from conduit.api.v1.files import UploadForm, read_audio
from conduit.api.v1.schemas import event_position, json_body, optional_json_body, run_request
from conduit.db.models import App, Role
from conduit.services import apps, model_config
from conduit.services.app_logs import console_user

router = APIRouter(prefix="/apps", tags=["console: app debugging"])


@router.get("/{app_id}/model-config")
def get_model_config(app_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    config = model_config.get_model_config(session, member=identity.membership, app_id=app_id)
    return {"data": config}


@router.post("/{app_id}/model-config")
def save_model_config(
    app_id: str,
    config: Annotated[dict[str, Any], Body()],
    identity: CurrentIdentity,
    session: DbSession,
) -> dict[str, Any]:
    """Validate and store the app's whole model config (400 names the bad field)."""
    app = model_config.save_model_config(
        session, member=identity.membership, app_id=app_id, config=config
    )
    return {"result": "success", "data": app.model_config_}


# --- the debugger ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleCaller:
    """The app being debugged and the run `user` of the signed-in account."""

    app: App
    user: str


def get_console_caller(app_id: str, identity: CurrentIdentity, session: DbSession) -> ConsoleCaller:
    apps.require_role(identity.membership, Role.EDITOR, "debug apps")
    app = apps.get_app(session, identity.membership.tenant_id, app_id)
    # End the read transaction now: a run opens its own, and on SQLite every transaction holds
    # the write lock. The loaded app stays usable (expire_on_commit=False).
    session.commit()
    return ConsoleCaller(app=app, user=console_user(identity.account.id))


Caller = Annotated[ConsoleCaller, Depends(get_console_caller)]


async def _create(request: Request, caller: ConsoleCaller, *, mode: str) -> Response:
    body = await json_body(request)
    if body.get("response_mode") in (None, ""):
        body["response_mode"] = "streaming"  # Dify's debugger streams unless told otherwise
    run = run_request(body, mode=mode)
    app_id = caller.app.id
    return await run_controller.start_chat(
        request,
        app=caller.app,
        key_id=None,
        user=caller.user,
        run=run,
        status_url=lambda task_id: f"/console/api/apps/{app_id}/tasks/{task_id}",
    )


async def stop_as_caller(request: Request, caller: ConsoleCaller, task_id: str) -> dict[str, Any]:
    await optional_json_body(request)  # a body is allowed, and ignored: the user is the caller
    return await run_controller.stop(request, app=caller.app, user=caller.user, task_id=task_id)


@router.post("/{app_id}/chat-messages")
async def debug_chat(request: Request, caller: Caller) -> Response:
    """Chat as the signed-in account: the Service API body (no `user`), streaming by default."""
    return await _create(request, caller, mode="chat")


@router.post("/{app_id}/chat-messages/{task_id}/stop")
async def stop_debug_chat(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    return await stop_as_caller(request, caller, task_id)


async def resume_as_caller(
    request: Request, caller: ConsoleCaller, task_id: str, after: str | None
) -> Response:
    position = event_position(after, request.headers.get("last-event-id"))
    return await run_controller.resume(
        request, app=caller.app, user=caller.user, task_id=task_id, after=position
    )


@router.get("/{app_id}/chat-messages/{task_id}/events")
async def resume_debug_chat(
    task_id: str,
    request: Request,
    caller: Caller,
    after: Annotated[str | None, Query(description="Or the Last-Event-ID header.")] = None,
) -> Response:
    """The signed-in account's debugger run: its events after `after` / `Last-Event-ID`
    (each once), then live; another account's run is a 404."""
    return await resume_as_caller(request, caller, task_id, after)


@router.post("/{app_id}/completion-messages")
async def debug_completion(request: Request, caller: Caller) -> Response:
    """A completion as the signed-in account (same body and events as the Service API)."""
    return await _create(request, caller, mode="completion")


@router.post("/{app_id}/completion-messages/{task_id}/stop")
async def stop_debug_completion(task_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    return await stop_as_caller(request, caller, task_id)


@router.get("/{app_id}/completion-messages/{task_id}/events")
async def resume_debug_completion(
    task_id: str,
    request: Request,
    caller: Caller,
    after: Annotated[str | None, Query(description="Or the Last-Event-ID header.")] = None,
) -> Response:
    """A debugger completion's events after `after` / `Last-Event-ID`, then live."""
    return await resume_as_caller(request, caller, task_id, after)


# --- speech, as the debugger's end user (Dify's console has both routes) --------------------


@router.post("/{app_id}/audio-to-text")
async def debug_audio_to_text(
    request: Request, caller: Caller, form: Annotated[UploadForm, Depends(read_audio)]
) -> dict[str, Any]:
    return await transcribed(request, caller.app, form)


@router.post("/{app_id}/text-to-audio")
async def debug_text_to_audio(request: Request, caller: Caller) -> Response:
    """A text, or one of the debugger's answers (`message_id`), read aloud."""
    return await speak_as(request, caller.app, caller.user, await json_body(request))
