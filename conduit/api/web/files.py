"""`POST /api/files/upload`: the end user's upload to the app (multipart, one `file` part);
`POST /api/remote-files/upload`: a file named by URL, fetched and kept as one; `GET
/api/remote-files/{url}`: what a URL holds."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from conduit.api.deps import DbSession, get_resources
from conduit.api.files import Links
from conduit.api.responses import OrjsonResponse
from conduit.api.v1.files import UploadForm, read_upload, store_upload
from conduit.api.v1.schemas import JsonBody
from conduit.api.web.deps import Caller
from conduit.services import files, remote_files

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


@router.post("/remote-files/upload", status_code=201)
async def upload_remote_file(
    caller: Caller, request: Request, links: Links, body: JsonBody
) -> OrjsonResponse:
    """The file at `url`, fetched (SSRF-checked) and kept as the end user's upload: Dify's
    file object and its signed `url`."""
    settings = request.app.state.settings
    found = await remote_files.fetch_file(body.get("url"), settings)
    db, storage = get_resources(request).db, request.app.state.storage

    def store() -> dict[str, Any]:
        with db.transaction() as session:
            row = files.upload(
                session,
                storage,
                app=caller.app,
                end_user=caller.end_user,
                filename=found.filename,
                mime_type=remote_files.mime_type_of(found),
                data=found.content,
                limits=files.UploadLimits.of(settings.upload),
            )
            return files.view(row, source_url=links.preview(row.id))

    stored = await asyncio.to_thread(store)
    return OrjsonResponse({**stored, "url": stored["source_url"]}, status_code=201)


@router.get("/remote-files/{url:path}")
async def remote_file_info(url: str, caller: Caller, request: Request) -> dict[str, Any]:
    """What `url` holds, by its HEAD: `{file_type, file_length}`."""
    settings = request.app.state.settings
    return remote_files.info(await remote_files.fetch_file(url, settings, method="HEAD"))
