"""POST /v1/files/upload (multipart), GET /v1/files/{id}/preview (the app's key) and
GET /v1/files/{id}/file-preview (a signed link, no key: the upload's `source_url`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile as FormFile
from starlette.responses import Response

from conduit.api.deps import AppCaller, DbSession
from conduit.api.files import FileLinks, Links, file_response
from conduit.api.responses import OrjsonResponse
from conduit.api.v1.schemas import optional, optional_user
from conduit.db.models import App, EndUser
from conduit.errors import InvalidParam, NoAudioUploaded, NoFileUploaded, TooManyFiles
from conduit.infra.signing import Signed
from conduit.services import files
from conduit.services.datasets import documents as dataset_documents
from conduit.services.end_users import get_or_create_end_user

router = APIRouter(tags=["service: files"])


@dataclass
class UploadForm:
    filename: str | None
    mime_type: str | None
    data: bytes
    user: str | None
    data_field: str | None = None  # the Knowledge API's `data` part (a JSON string)


async def read_upload(request: Request) -> UploadForm:
    """Exactly one file part named `file`, and an optional `user` field."""
    return await read_form_file(request, ("file",), NoFileUploaded)


async def read_audio(request: Request) -> UploadForm:
    """`/audio-to-text`'s form: one part named `file` (or `audio_file`, as an old SDK sent it)
    and an optional `user` field."""
    return await read_form_file(request, ("file", "audio_file"), NoAudioUploaded)


async def read_form_file(
    request: Request, names: tuple[str, ...], missing: type[InvalidParam]
) -> UploadForm:
    """Exactly one file part, named one of `names` (none: `missing`), and the form's `user`
    (and `data`) fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise missing()
    try:
        form = await request.form(max_files=10, max_fields=50)
    except Exception as error:  # malformed multipart bodies
        raise InvalidParam(f"The upload could not be read: {error}") from None
    files = [(name, value) for name, value in form.multi_items() if isinstance(value, FormFile)]
    if len(files) > 1:
        raise TooManyFiles()
    if not files or files[0][0] not in names:
        raise missing()
    part = files[0][1]
    user = form.get("user")
    data_field = form.get("data")
    data = await part.read()
    return UploadForm(
        filename=part.filename,
        mime_type=part.content_type,
        data=data,
        user=user if isinstance(user, str) else None,
        data_field=data_field if isinstance(data_field, str) else None,
    )


@router.post("/files/upload", status_code=201)
def upload_file(
    caller: AppCaller,
    session: DbSession,
    request: Request,
    links: Links,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> OrjsonResponse:
    end_user = get_or_create_end_user(session, caller.app, optional_user(form.user))
    return store_upload(session, request, links, app=caller.app, end_user=end_user, form=form)


def store_upload(
    session: Session,
    request: Request,
    links: FileLinks,
    *,
    app: App,
    end_user: EndUser,
    form: UploadForm,
) -> OrjsonResponse:
    """Store `end_user`'s upload to `app` (the settings' size limits): Dify's 201 and file."""
    settings = request.app.state.settings
    row = files.upload(
        session,
        request.app.state.storage,
        app=app,
        end_user=end_user,
        filename=form.filename,
        mime_type=form.mime_type,
        data=form.data,
        limits=files.UploadLimits.of(settings.upload),
    )
    return OrjsonResponse(files.view(row, source_url=links.preview(row.id)), status_code=201)


def _required(name: str, value: str | None) -> str:
    if not value:
        raise InvalidParam(f"{name} is required")
    return value


def _is_true(value: str | None) -> bool:
    return (optional(value) or "false").lower() == "true"


@router.get("/files/{file_id}/preview")
def preview_file(
    file_id: str,
    caller: AppCaller,
    session: DbSession,
    request: Request,
    as_attachment: Annotated[str | None, Query()] = None,
) -> Response:
    """A file uploaded through the caller's app (any other is 404)."""
    row, data = files.preview(session, request.app.state.storage, app=caller.app, file_id=file_id)
    return file_response(row, data, as_attachment=_is_true(as_attachment))


@router.get("/files/{file_id}/file-preview")
def signed_file_preview(
    file_id: str,
    session: DbSession,
    request: Request,
    timestamp: Annotated[str | None, Query()] = None,
    nonce: Annotated[str | None, Query()] = None,
    sign: Annotated[str | None, Query()] = None,
    as_attachment: Annotated[str | None, Query()] = None,
) -> Response:
    """A signed link (an upload's `source_url`, a site's `icon_url`): no API key; 403 when
    its signature is wrong or it has expired (`CONDUIT_UPLOAD_SIGNED_URL_SECONDS`)."""
    signed = Signed(
        _required("timestamp", timestamp), _required("nonce", nonce), _required("sign", sign)
    )
    settings = request.app.state.settings
    row, data = files.signed_preview(
        session,
        request.app.state.storage,
        file_id=file_id,
        signed=signed,
        secret=settings.secret_key(),
        max_age=settings.upload.signed_url_seconds,
    )
    return file_response(row, data, as_attachment=_is_true(as_attachment))


@router.get("/datasets/files/{file_id}/download")
def signed_document_download(
    file_id: str,
    session: DbSession,
    request: Request,
    timestamp: Annotated[str | None, Query()] = None,
    nonce: Annotated[str | None, Query()] = None,
    sign: Annotated[str | None, Query()] = None,
) -> Response:
    """A dataset document's original file by the signed link `…/documents/{id}/download`
    gave: no key; 403 when the signature is wrong or expired, always a download."""
    signed = Signed(
        _required("timestamp", timestamp), _required("nonce", nonce), _required("sign", sign)
    )
    settings = request.app.state.settings
    row, data = dataset_documents.signed_document_file(
        session,
        request.app.state.storage,
        file_id=file_id,
        signed=signed,
        secret=settings.secret_key(),
        max_age=settings.upload.signed_url_seconds,
    )
    return file_response(row, data, as_attachment=True)
