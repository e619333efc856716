"""What no route may take, refused before any route runs (pure ASGI middleware).

- A request body over `CONDUIT_HTTP_MAX_JSON_BODY_BYTES` (multipart uploads: the largest
  upload limit plus room for the form; a DSL import: a 10 MB file) is a 413, and is never
  read into memory past the limit: a declared `Content-Length` is checked before any byte
  is read, a chunked body is counted while it is read. The hot run routes
  (`conduit.api.hot_routes`) sit inside this too.
- A NUL character in the path is a 404 (no resource has one), in a query parameter a 400
  naming it: PostgreSQL text cannot hold one, and SQLite must refuse what PostgreSQL refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conduit.api.errors import error_response
from conduit.errors import ConduitError, InvalidParam, NotFound, RequestTooLarge

MB = 1024 * 1024
# A multipart upload is its file plus boundaries, part headers and small fields (`user`).
FORM_ROOM = MB
_MULTIPART = b"multipart/form-data"
_NOT_FOUND = "The requested URL was not found on the server."


# A DSL import carries a whole app file (up to 10 MB, as in Dify) as a JSON string.
DSL_IMPORT_PATH = "/console/api/apps/imports"
DSL_IMPORT_BYTES = 2 * 10 * MB + FORM_ROOM  # JSON escaping may double it


@dataclass(frozen=True)
class BodyLimits:
    json_bytes: int
    upload_bytes: int

    def for_type(self, content_type: bytes, path: str = "") -> int:
        if content_type.lower().startswith(_MULTIPART):
            return self.upload_bytes
        if path == DSL_IMPORT_PATH:
            return max(self.json_bytes, DSL_IMPORT_BYTES)
        return self.json_bytes


def _limits_of(scope: Scope) -> BodyLimits:
    # The app's settings, read once: create_app installs the middleware that builds this
    # guard with no settings at hand, and the lifespan has set them before any request.
    settings = scope["app"].state.settings
    upload = settings.upload
    return BodyLimits(
        json_bytes=settings.http.max_json_body_bytes,
        upload_bytes=max(
            upload.file_size_limit_mb,
            upload.image_size_limit_mb,
            upload.audio_size_limit_mb,
            upload.video_size_limit_mb,
        )
        * MB
        + FORM_ROOM,
    )


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limits: BodyLimits | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _nul_refusal(scope)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        length, content_type, chunked = _body_headers(scope)
        if length is None and not chunked:  # no body
            await self.app(scope, receive, send)
            return
        if self.limits is None:
            self.limits = _limits_of(scope)
        limit = self.limits.for_type(content_type, scope.get("path", ""))
        if chunked:
            first = await _read_body(receive, limit)
            if first is not None:
                await self.app(scope, _replay(first, receive), send)
                return
        elif length is not None and length <= limit:
            # The server reads exactly Content-Length bytes: nothing more can come.
            await self.app(scope, receive, send)
            return
        # Unread bytes are drained by the server, which keeps the connection.
        too_large = RequestTooLarge(
            f"{RequestTooLarge.default_message} A request body may hold at most {limit} bytes."
        )
        await error_response(too_large)(scope, receive, send)


def _body_headers(scope: Scope) -> tuple[int | None, bytes, bool]:
    """(Content-Length, Content-Type, chunked) of the request."""
    length: int | None = None
    content_type = b""
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None  # the server refuses a malformed one before we see it
        elif name == b"content-type":
            content_type = value
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return length, content_type, chunked


async def _read_body(receive: Receive, limit: int) -> Message | None:
    """The whole body as one message (or the disconnect that cut it short); None past `limit`."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return message
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return {"type": "http.request", "body": bytes(body), "more_body": False}


def _replay(first: Message, receive: Receive) -> Receive:
    """`first`, then the server's own messages (a stream still learns of a disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def _nul_refusal(scope: Scope) -> ConduitError | None:
    if "\x00" in scope["path"]:
        return NotFound(_NOT_FOUND)
    query: bytes = scope["query_string"]
    if b"%00" not in query:  # a NUL reaches a query string only percent-encoded
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\u0000")
            return InvalidParam(f"{shown}: must not contain NUL characters (\\u0000)")
    return None
