"""POST /v1/files/upload (multipart) and GET /v1/files/{id}/preview."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile as FormFile
from starlette.responses import Response

from conduit.api.deps import AppCaller, DbSession
from conduit.api.responses import OrjsonResponse
from conduit.api.v1.schemas import optional, optional_user
from conduit.errors import InvalidParam, NoFileUploaded, TooManyFiles
from conduit.services import files
from conduit.services.end_users import get_or_create_end_user

router = APIRouter(tags=["service: files"])


@dataclass
class UploadForm:
    filename: str | None
    mime_type: str | None
    data: bytes
    user: str | None


async def read_upload(request: Request) -> UploadForm:
    """Exactly one file part named `file`, and an optional `user` field."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise NoFileUploaded()
    try:
        form = await request.form(max_files=10, max_fields=50)
    except Exception as error:  # malformed multipart bodies
        raise InvalidParam(f"The upload could not be read: {error}") from None
    files = [(name, value) for name, value in form.multi_items() if isinstance(value, FormFile)]
    if len(files) > 1:
        raise TooManyFiles()
    if not files or files[0][0] != "file":
        raise NoFileUploaded()
    part = files[0][1]
    user = form.get("user")
    data = await part.read()
    return UploadForm(
        filename=part.filename,
        mime_type=part.content_type,
        data=data,
        user=user if isinstance(user, str) else None,
    )


@router.post("/files/upload", status_code=201)
def upload_file(
    caller: AppCaller,
    session: DbSession,
    request: Request,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> OrjsonResponse:
    settings = request.app.state.settings
    row = files.upload(
        session,
        request.app.state.storage,
        app=caller.app,
        end_user=get_or_create_end_user(session, caller.app, optional_user(form.user)),
        filename=form.filename,
        mime_type=form.mime_type,
        data=form.data,
        limits=files.UploadLimits(
            file_mb=settings.upload.file_size_limit_mb, image_mb=settings.upload.image_size_limit_mb
        ),
    )
    return OrjsonResponse(files.view(row), status_code=201)


@router.get("/files/{file_id}/preview")
def preview_file(
    file_id: str,
    caller: AppCaller,
    session: DbSession,
    request: Request,
    as_attachment: Annotated[str | None, Query()] = None,
) -> Response:
    row, data = files.preview(session, request.app.state.storage, app=caller.app, file_id=file_id)
    headers: dict[str, Any] = {}
    if (optional(as_attachment) or "false").lower() == "true":
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(row.name)}"
    return Response(data, media_type=row.mime_type or "application/octet-stream", headers=headers)
