"""Serving stored files: signed links to them, and responses a browser cannot be tricked by.

Uploaded bytes are the caller's: an HTML page or an SVG with a script, shown inline from this
origin, would run as this server (stored XSS). Only passive types are shown inline
(`services.files.is_passive`: the stored type and the extension); everything else is a
download as `application/octet-stream`. Every file response says `nosniff` and carries a CSP
that allows nothing, sandboxed, so even an inline file can neither run nor load anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import encode_rfc2231
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request
from starlette.responses import Response

from conduit.db.models import UploadFile
from conduit.infra import signing
from conduit.infra.settings import Settings
from conduit.services import files

FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
_FALLBACK_SAFE = frozenset(" ._-()[]+,")


@dataclass(frozen=True)
class FileLinks:
    """Signs links to files under the server's base URL (the request's)."""

    base_url: str  # without a trailing slash
    secret: str

    def preview(self, file_id: str) -> str:
        """A signed, expiring link to the file: `GET` it without an API key."""
        query = urlencode(signing.sign_file(file_id, secret=self.secret).params())
        return f"{self.base_url}/v1/files/{file_id}/file-preview?{query}"

    def document(self, file_id: str) -> str:
        """A signed, expiring link to a dataset document's file (a download)."""
        query = urlencode(signing.sign_file(file_id, secret=self.secret).params())
        return f"{self.base_url}/v1/datasets/files/{file_id}/download?{query}"


def get_file_links(request: Request) -> FileLinks:
    """Links under the URL this request reached the server by (a sync dependency:
    `secret_key()` may read the secret's file)."""
    settings: Settings = request.app.state.settings
    return FileLinks(str(request.base_url).rstrip("/"), settings.secret_key())


Links = Annotated[FileLinks, Depends(get_file_links)]


def content_disposition(kind: str, filename: str) -> str:
    """RFC 6266: `filename` in plain ASCII (any other character as `_`), and the exact name as
    RFC 5987 `filename*` (percent-encoded UTF-8) when it differs; a quote, CR or LF in a name
    never reaches the header as itself."""
    fallback = "".join(
        c if c.isascii() and (c.isalnum() or c in _FALLBACK_SAFE) else "_" for c in filename
    )
    if fallback == filename:
        return f'{kind}; filename="{filename}"'
    return f'{kind}; filename="{fallback}"; filename*={encode_rfc2231(filename, "utf-8")}'


def file_response(row: UploadFile, data: bytes, *, as_attachment: bool) -> Response:
    """The file's bytes: inline with its type when passive (unless `as_attachment`),
    otherwise a download as `application/octet-stream`."""
    passive = files.is_passive(row)
    inline = passive and not as_attachment
    headers = {
        **FILE_HEADERS,
        "Content-Disposition": content_disposition("inline" if inline else "attachment", row.name),
    }
    media_type = files.media_type(row) if passive else "application/octet-stream"
    return Response(data, media_type=media_type, headers=headers)
