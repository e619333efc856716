"""Uploads of the Service API: limits and types as Dify, bytes in storage, a row per file."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

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
from conduit.infra.storage import Storage
from conduit.services.conversations import is_uuid

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "svg"})
BLOCKED_EXTENSIONS = frozenset(
    {"exe", "bat", "cmd", "com", "scr", "msi", "dll", "sh", "ps1", "vbs"}
)


@dataclass(frozen=True)
class UploadLimits:
    file_mb: int = 15
    image_mb: int = 10


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
    limit_mb = limits.image_mb if extension in IMAGE_EXTENSIONS else limits.file_mb
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


def view(row: UploadFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "size": row.size,
        "extension": row.extension,
        "mime_type": row.mime_type,
        "created_by": row.created_by,
        "created_at": int(row.created_at.timestamp()),
        "preview_url": None,
        "source_url": None,
        "original_url": None,
        "user_id": None,
        "tenant_id": row.tenant_id,
        "conversation_id": None,
        "file_key": None,
        "reference": None,
    }


def preview(
    session: Session, storage: Storage, *, app: App, file_id: str
) -> tuple[UploadFile, bytes]:
    """A file uploaded through this app; another workspace's is 404, another app's 403."""
    row = session.get(UploadFile, file_id) if is_uuid(file_id) else None
    if row is None or row.tenant_id != app.tenant_id:
        raise FileNotFound()
    uploader = session.get(EndUser, row.created_by) if row.created_by else None
    if uploader is None or uploader.app_id != app.id:
        raise FileAccessDenied()
    try:
        return row, storage.load(row.key)
    except FileNotFoundError:
        raise FileNotFound() from None
