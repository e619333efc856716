"""A file the end user names by URL, fetched and kept as their upload (Dify's web
`/remote-files/upload`), and what a URL holds (`/remote-files/{url}`): fetched by the
workflow HTTP node's rules (`core/workflow/http_request.fetch`: every hop resolved and checked
against the SSRF rules and the webhook allow-list, the connection pinned to the checked
address, the body read up to the largest upload), then stored as an upload is, with its own
type's limit."""

from __future__ import annotations

import mimetypes
from typing import Any

from conduit.core.workflow.http_request import (
    Fetched,
    HttpLimits,
    HttpRequestFailed,
    Timeouts,
    fetch,
)
from conduit.errors import FileTooLarge, InvalidParam
from conduit.infra.settings import Settings
from conduit.infra.ssrf import AllowList

# A remote server answers within these, or the end user is told so.
TIMEOUTS = Timeouts(connect=5, read=30, write=30)


class RemoteFileUploadFailed(InvalidParam):
    code = "remote_file_upload_failed"
    default_message = "Error uploading remote file."


def _limits(settings: Settings) -> HttpLimits:
    upload = settings.upload
    largest = max(
        upload.file_size_limit_mb,
        upload.image_size_limit_mb,
        upload.audio_size_limit_mb,
        upload.video_size_limit_mb,
    )
    return HttpLimits(
        max_response_bytes=largest * 1024 * 1024,
        max_timeouts=TIMEOUTS,
        default_timeouts=TIMEOUTS,
    )


async def fetch_file(url: Any, settings: Settings, *, method: str = "GET") -> Fetched:
    """The file at `url` (a 2xx answer), or a 4xx naming why not."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidParam("url is required")
    try:
        found = await fetch(
            url.strip(),
            allow=AllowList.of(settings.webhook),
            limits=_limits(settings),
            method=method,
        )
    except HttpRequestFailed as failed:
        if failed.error_type == "ResponseSizeError":
            raise FileTooLarge(f"File size exceeded. {failed.message}") from None
        raise RemoteFileUploadFailed(f"Failed to fetch file from {url}: {failed.message}") from None
    if not 200 <= found.status_code < 300:
        raise RemoteFileUploadFailed(f"Failed to fetch file from {url}: HTTP {found.status_code}")
    return found


def mime_type_of(found: Fetched) -> str:
    """The body's media type: as the answer says, else as its name suggests."""
    said = found.mime_type
    if said and said != "application/octet-stream":
        return said
    return mimetypes.guess_type(found.filename)[0] or said or "application/octet-stream"


def info(found: Fetched) -> dict[str, Any]:
    """Dify's `{file_type, file_length}` of a URL (its HEAD)."""
    length = found.headers.get("content-length", "")
    return {
        "file_type": found.headers.get("content-type", "application/octet-stream"),
        "file_length": int(length) if str(length).isdigit() else len(found.content),
    }
