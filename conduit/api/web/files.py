"""`POST /api/files/upload`: the end user's upload to the app (multipart, one `file` part)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from conduit.api.deps import DbSession
from conduit.api.files import Links
from conduit.api.responses import OrjsonResponse
from conduit.api.v1.files import UploadForm, read_upload, store_upload
from conduit.api.web.deps import Caller

router = APIRouter(tags=["web: files"])


@router.post("/files/upload", status_code=201)
def upload_file(
    caller: Caller,
    session: DbSession,
    request: Request,
    links: Links,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> OrjsonResponse:
    return store_upload(
        session, request, links, app=caller.app, end_user=caller.end_user, form=form
    )
