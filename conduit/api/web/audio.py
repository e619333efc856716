"""POST /api/audio-to-text and /api/text-to-audio: the speech routes of the Service API
(`api/v1/audio.py`) for the end user the passport names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from conduit.api.v1.audio import speak, transcribed
from conduit.api.v1.files import UploadForm, read_audio
from conduit.api.v1.schemas import JsonBody
from conduit.api.web.deps import Caller
from conduit.db.models import EndUser

router = APIRouter(tags=["web: audio"])


@router.post("/audio-to-text")
async def audio_to_text(
    request: Request, caller: Caller, form: Annotated[UploadForm, Depends(read_audio)]
) -> dict[str, Any]:
    return await transcribed(request, caller.app, form)


@router.post("/text-to-audio")
async def text_to_audio(request: Request, caller: Caller, body: JsonBody) -> Response:
    def end_user(session: Session) -> EndUser:
        return caller.end_user

    return await speak(request, caller.app, end_user, body)
