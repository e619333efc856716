"""POST /v1/audio-to-text (multipart: a recording → `{"text"}`) and POST /v1/text-to-audio
(JSON: a text or a message's answer → audio bytes): Dify's speech routes, through the app's
model provider (`services/audio.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from conduit.api.deps import AppCaller
from conduit.api.runs import runs_of
from conduit.api.v1.files import UploadForm, read_audio
from conduit.api.v1.schemas import JsonBody, optional_user
from conduit.db.models import EndUser
from conduit.errors import InvalidParam
from conduit.services import audio
from conduit.services.end_users import get_or_create_end_user

router = APIRouter(tags=["service: audio"])


@router.post("/audio-to-text")
async def audio_to_text(
    request: Request, caller: AppCaller, form: Annotated[UploadForm, Depends(read_audio)]
) -> dict[str, Any]:
    return await transcribed(request, caller.app, form)


async def transcribed(request: Request, app: Any, form: UploadForm) -> dict[str, Any]:
    """Both tiers' `/audio-to-text`: the form's recording → `{"text"}`."""
    recording = audio.check_recording(form.filename, form.mime_type, form.data)
    return {"text": await audio.transcribe(runs_of(request), app=app, recording=recording)}


@router.post("/text-to-audio")
async def text_to_audio(request: Request, caller: AppCaller, body: JsonBody) -> Response:
    return await speak_as(request, caller.app, optional_user(body.get("user")), body)


async def speak_as(request: Request, app: Any, user: str | None, body: dict[str, Any]) -> Response:
    """`/text-to-audio` for the Service API's end user `user` (the debugger's too)."""

    def end_user(session: Session) -> EndUser:
        return get_or_create_end_user(session, session.merge(app, load=False), user)

    return await speak(request, app, end_user, body)


async def speak(request: Request, app: Any, end_user: Any, body: dict[str, Any]) -> Response:
    """Both tiers' `/text-to-audio`: `{message_id?, text?, voice?, streaming?}` (streaming
    is taken and ignored, as Dify does) → the audio's bytes."""
    fields = {name: body.get(name) for name in ("message_id", "text", "voice")}
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InvalidParam(f"{name} must be a string")
    spoken = await audio.read_aloud(
        runs_of(request),
        app=app,
        end_user=end_user,
        message_id=fields["message_id"] or None,
        text=fields["text"],
        voice=fields["voice"] or None,
    )
    return Response(spoken.audio, media_type=spoken.content_type)
