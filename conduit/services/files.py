"""Uploads of the Service API: limits and types as Dify, bytes in storage, a row per file.

A file belongs to the app it was uploaded through (its uploader is one of the app's end
users): every lookup by id goes through `_readable()`, and another app's file, in this
workspace or another, does not exist (404). A signed link (`conduit.infra.signing`) opens
the one file it was signed for, and links are signed only for the app's own files.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from conduit.db.models import App, EndUser, UploadFile, utcnow
from conduit.errors import (
    FileAccessDenied,
    FilenameNotExists,
    FileNotFound,
    FileTooLarge,
    InvalidParam,
    UnsupportedFileType,
)
from conduit.infra import signing
from conduit.infra.settings import UploadSettings
from conduit.infra.storage import Storage
from conduit.services.conversations import is_uuid

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "svg"})
AUDIO_EXTENSIONS = frozenset({"mp3", "m4a", "wav", "amr", "mpga"})  # Dify's lists
VIDEO_EXTENSIONS = frozenset({"mp4", "mov", "mpeg", "webm"})
BLOCKED_EXTENSIONS = frozenset(
    {"exe", "bat", "cmd", "com", "scr", "msi", "dll", "sh", "ps1", "vbs"}
)


@dataclass(frozen=True)
class UploadLimits:
    file_mb: int = 15
    image_mb: int = 10
    audio_mb: int = 50
    video_mb: int = 100

    @classmethod
    def of(cls, upload: UploadSettings) -> UploadLimits:
        return cls(
            file_mb=upload.file_size_limit_mb,
            image_mb=upload.image_size_limit_mb,
            audio_mb=upload.audio_size_limit_mb,
            video_mb=upload.video_size_limit_mb,
        )

    def for_extension(self, extension: str) -> int:
        """The limit (MB) of a file by its extension: an image's, audio's, video's or any
        other file's."""
        if extension in IMAGE_EXTENSIONS:
            return self.image_mb
        if extension in AUDIO_EXTENSIONS:
            return self.audio_mb
        if extension in VIDEO_EXTENSIONS:
            return self.video_mb
        return self.file_mb


def upload(
    session: Session,
    storage: Storage,
    *,
    app: App,
    end_user: EndUser,
    filename: str | None,
    mime_type: str | None,
    data: bytes,
    limits: UploadLimits,
) -> UploadFile:
    if not filename:
        raise FilenameNotExists()
    if "/" in filename or "\\" in filename:
        raise InvalidParam("filename must not contain / or \\")
    _storable(filename, "filename", 255)
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if len(extension) > 32:
        raise InvalidParam("filename: the extension must be at most 32 characters")
    if extension in BLOCKED_EXTENSIONS:
        raise InvalidParam(f"File extension '{extension}' is not allowed.")
    if not mime_type:
        raise UnsupportedFileType()
    _storable(mime_type, "mime_type", 255)
    limit_mb = limits.for_extension(extension)
    if len(data) > limit_mb * 1024 * 1024:
        raise FileTooLarge(f"File size exceeded. {len(data)} > {limit_mb} MB")
    file_id = str(uuid.uuid4())
    key = f"upload_files/{app.tenant_id}/{file_id}.{extension or 'bin'}"
    storage.save(key, data)
    row = UploadFile(
        id=file_id,
        tenant_id=app.tenant_id,
        storage_type="local",
        key=key,
        name=filename,
        size=len(data),
        extension=extension,
        mime_type=mime_type,
        hash=hashlib.sha256(data).hexdigest(),
        created_by_role="end_user",
        created_by=end_user.id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def _storable(value: str, field: str, limit: int) -> None:
    """What the column holds, on both dialects (PostgreSQL refuses NUL and longer values)."""
    if len(value) > limit:
        raise InvalidParam(f"{field}: must be at most {limit} characters")
    if "\x00" in value:
        raise InvalidParam(f"{field}: must not contain NUL characters (\\u0000)")


def view(row: UploadFile, *, source_url: str | None) -> dict[str, Any]:
    """The upload as Dify returns it; `source_url` is the signed preview link (Dify leaves
    `preview_url` null)."""
    return {
        "id": row.id,
        "name": row.name,
        "size": row.size,
        "extension": row.extension,
        "mime_type": row.mime_type,
        "created_by": row.created_by,
        "created_at": int(row.created_at.timestamp()),
        "preview_url": None,
        "source_url": source_url,
        "original_url": None,
        "user_id": None,
        "tenant_id": row.tenant_id,
        "conversation_id": None,
        "file_key": None,
        "reference": None,
    }


def _uploaded() -> Select[UploadFile]:
    """Files with their uploader, an app's end user: a deleted app's end users are gone
    (ON DELETE CASCADE), and so are its files for every lookup."""
    return (
        select(UploadFile)
        .join(EndUser, EndUser.id == UploadFile.created_by)
        .where(UploadFile.created_by_role == "end_user")
    )


def _readable(tenant_id: str, app_id: str) -> Select[UploadFile]:
    """The only way to select an app's files: those its end users uploaded."""
    return _uploaded().where(UploadFile.tenant_id == tenant_id, EndUser.app_id == app_id)


def find_file(session: Session, *, tenant_id: str, app_id: str, file_id: str) -> UploadFile | None:
    """The app's file `file_id`, or None (unknown, not a UUID, or another app's)."""
    if not is_uuid(file_id):
        return None
    return session.scalars(
        _readable(tenant_id, app_id).where(UploadFile.id == file_id.lower())
    ).first()


def _load(storage: Storage, row: UploadFile) -> tuple[UploadFile, bytes]:
    try:
        return row, storage.load(row.key)
    except FileNotFoundError:
        raise FileNotFound() from None


def preview(
    session: Session, storage: Storage, *, app: App, file_id: str
) -> tuple[UploadFile, bytes]:
    """A file uploaded through this app; any other (another app's too) is 404."""
    row = find_file(session, tenant_id=app.tenant_id, app_id=app.id, file_id=file_id)
    if row is None:
        raise FileNotFound()
    return _load(storage, row)


def signed_preview(
    session: Session,
    storage: Storage,
    *,
    file_id: str,
    signed: signing.Signed,
    secret: str,
    max_age: float,
) -> tuple[UploadFile, bytes]:
    """The file a signed link was made for: 403 when the signature is wrong or expired
    (checked before any read), 404 when the file or the app it belongs to is gone."""
    try:
        signing.verify_file(file_id, signed, secret=secret, max_age=max_age)
    except signing.ExpiredSignature:
        raise FileAccessDenied("The file link has expired.") from None
    except signing.SignatureError:
        raise FileAccessDenied("The file link's signature is invalid.") from None
    row = (
        session.scalars(_uploaded().where(UploadFile.id == file_id.lower())).first()
        if is_uuid(file_id)
        else None
    )
    if row is None:
        raise FileNotFound()
    return _load(storage, row)


# Served inline only when both the stored type and the extension are passive (nothing a
# browser would run): an `.html` uploaded as image/png, or an SVG, is sent as a download.
_PASSIVE_TYPES = {
    "image/png": {"png"},
    "image/jpeg": {"jpg", "jpeg"},
    "image/gif": {"gif"},
    "image/webp": {"webp"},
    "image/bmp": {"bmp"},
    "application/pdf": {"pdf"},
    "text/plain": {"txt", "text", "log"},
    "text/csv": {"csv"},
    "text/markdown": {"md", "markdown"},
}
_PASSIVE_MEDIA = {  # any audio/* or video/* type, with one of these extensions
    "audio": {"mp3", "m4a", "wav", "ogg", "oga", "opus", "flac", "aac", "amr", "mpga", "webm"},
    "video": {"mp4", "m4v", "mov", "webm", "ogv", "mpeg", "mpg"},
}


def media_type(row: UploadFile) -> str:
    """The stored type without parameters, lower case (`application/octet-stream` if none)."""
    stored = (row.mime_type or "").split(";", 1)[0].strip().lower()
    return stored or "application/octet-stream"


def is_passive(row: UploadFile) -> bool:
    """Whether a browser may show the file inline: its type and its extension are both on
    the passive list (images other than SVG, PDF, plain text, audio, video)."""
    kind, extension = media_type(row), row.extension.lower()
    if kind in _PASSIVE_TYPES:
        return extension in _PASSIVE_TYPES[kind]
    family = kind.split("/", 1)[0]
    return extension in _PASSIVE_MEDIA.get(family, set())
