"""The files a chat or completion message is sent with (Dify's `files` of `/chat-messages` and
`/completion-messages`): checked against the app's `file_upload` setting when the run is
accepted, kept as the message's `message_files`, and read for the model when the run starts.

What the model gets: an image as an image part of the question (an upload as a `data:` URL,
since the model server cannot reach this one; a `remote_url` as given, for the model server
to fetch, as Dify does); a document's text (an upload, parsed as a dataset's document is)
after the question; any other file only by its name. Documents given by URL are not fetched
by this server (SSRF): the model is told their address.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from conduit.core.apps.chat import AttachmentsFailed, TurnFiles
from conduit.core.llm.provider import ChatMessage
from conduit.core.rag.errors import IndexingError
from conduit.core.rag.extract import extension_of, extract
from conduit.core.runs.spec import RunSpec
from conduit.db.models import App, MessageFile, UploadFile, new_id
from conduit.errors import InvalidParam
from conduit.infra.db import Database
from conduit.infra.storage import Storage
from conduit.services import files as uploads

FILE_TYPES = ("image", "document", "audio", "video", "custom")
TRANSFER_METHODS = ("remote_url", "local_file")
DEFAULT_LIMIT = 3
MAX_URL = 2048
# A document's text given to the model is cut here (about 25k tokens).
DOCUMENT_CHARS = 100_000

logger = logging.getLogger(__name__)


class UploadPolicy(NamedTuple):
    """What an app's `file_upload` takes."""

    types: list[str]
    methods: list[str]  # transfer methods
    limit: int  # files per message
    detail: str  # an image's detail for the model


def upload_policy(config: Mapping[str, Any]) -> UploadPolicy | None:
    """What the app's `file_upload` takes, or None when it takes no files. Dify's two shapes:
    `{enabled, allowed_file_types, allowed_file_upload_methods, number_limits}`, or the older
    `{image: {enabled, ...}}`."""
    upload = config.get("file_upload")
    if not isinstance(upload, Mapping):
        return None
    found = upload.get("image")
    image: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    detail = str(image.get("detail") or "high")
    if upload.get("enabled"):
        types = [str(t) for t in upload.get("allowed_file_types") or []] or ["image"]
        methods = upload.get("allowed_file_upload_methods") or image.get("transfer_methods")
        limit = upload.get("number_limits") or image.get("number_limits")
    elif image.get("enabled"):
        types, methods, limit = ["image"], image.get("transfer_methods"), image.get("number_limits")
    else:
        return None
    methods = [str(m) for m in methods or []] or list(TRANSFER_METHODS)
    return UploadPolicy(types, methods, int(limit or DEFAULT_LIMIT), detail)


def checked_files(
    session: Session, app: App, sent: Any, config: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The request's `files`, checked (400 naming the item and the rule otherwise): each an
    object of a type and transfer method the app takes, an upload of this app or an http(s)
    URL, no more than the app allows. Each as the run and the message keep it. `config`
    holds the app's `file_upload` (a chatflow's: its workflow's features), else the app's
    model config does."""
    if sent is None or sent == []:
        return []
    if not isinstance(sent, list):
        raise InvalidParam("files: must be a list")
    policy = upload_policy(app.model_config_ or {} if config is None else config)
    if policy is None:
        raise InvalidParam("files: this app takes no files (its file upload is not enabled)")
    if len(sent) > policy.limit:
        raise InvalidParam(f"files: this app takes at most {policy.limit} files per message")
    return [_checked(session, app, item, f"files[{i}]", policy) for i, item in enumerate(sent)]


def _checked(
    session: Session,
    app: App,
    item: Any,
    name: str,
    policy: UploadPolicy,
) -> dict[str, Any]:
    types, methods, _, detail = policy
    if not isinstance(item, dict):
        raise InvalidParam(f"{name}: must be an object")
    kind = item.get("type")
    if kind not in FILE_TYPES:
        raise InvalidParam(f"{name}.type: must be one of {', '.join(FILE_TYPES)}")
    if kind not in types:
        raise InvalidParam(f"{name}.type: this app takes {', '.join(types)} files, not {kind}")
    method = item.get("transfer_method")
    if method not in TRANSFER_METHODS:
        raise InvalidParam(f"{name}.transfer_method: must be one of {', '.join(TRANSFER_METHODS)}")
    if method not in methods:
        raise InvalidParam(f"{name}.transfer_method: this app takes {', '.join(methods)}")
    if method == "local_file":
        file_id = item.get("upload_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidParam(f"{name}.upload_file_id: required for a local_file")
        row = uploads.find_file(session, tenant_id=app.tenant_id, app_id=app.id, file_id=file_id)
        if row is None:
            raise InvalidParam(f"{name}.upload_file_id: no file {file_id} was uploaded to this app")
        if kind == "image" and row.extension.lower() not in uploads.IMAGE_EXTENSIONS:
            raise InvalidParam(f"{name}: {row.name} is not an image")
        return _kept(kind, method, detail, upload_file_id=row.id, filename=row.name, row=row)
    url = item.get("url")
    if not isinstance(url, str):
        raise InvalidParam(f"{name}.url: an http(s) URL is required for a remote_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidParam(f"{name}.url: an http(s) URL is required for a remote_url")
    if len(url) > MAX_URL:
        raise InvalidParam(f"{name}.url: must be at most {MAX_URL} characters")
    return _kept(kind, method, detail, url=url, filename=url_name(url)[:255])


def url_name(url: str) -> str:
    """A file's name as its URL gives it: the last path segment, else the host."""
    parts = urlsplit(url)
    return unquote(parts.path.rsplit("/", 1)[-1]) or parts.netloc


def _kept(
    kind: str,
    method: str,
    detail: str,
    *,
    filename: str,
    upload_file_id: str | None = None,
    url: str | None = None,
    row: UploadFile | None = None,
) -> dict[str, Any]:
    return {
        "type": kind,
        "transfer_method": method,
        "upload_file_id": upload_file_id,
        "url": url,
        "filename": filename,
        "mime_type": row.mime_type if row else None,
        "size": row.size if row else -1,
        "detail": detail,
    }


def past_files(
    session: Session, app: App, message_ids: Sequence[str], prompt: Sequence[ChatMessage]
) -> list[dict[str, Any]]:
    """The files of the past turns a chat's prompt remembers, as `checked_files` gives them,
    each with `at`: the index in `prompt` of its turn's question (`message_ids` are the turns,
    oldest first, as the prompt's user messages before the last). Only those the app takes
    now (a type or transfer method it stopped taking is left out); none when it takes no
    files. One query."""
    policy = upload_policy(app.model_config_ or {})
    if policy is None or not message_ids:
        return []
    questions = [index for index, message in enumerate(prompt) if message.role == "user"]
    at = dict(zip(message_ids, questions, strict=False))
    found = []
    for file, upload in _file_rows(session, message_ids, belongs_to="user"):
        if file.type not in policy.types or file.transfer_method not in policy.methods:
            continue
        if file.transfer_method == "local_file":
            if upload is None:
                continue  # its app's end user is gone, and the file with them
            kept = _kept(file.type, file.transfer_method, policy.detail,
                         upload_file_id=upload.id, filename=upload.name, row=upload)  # fmt: skip
        else:
            url = file.url or ""
            kept = _kept(file.type, file.transfer_method, policy.detail,
                         url=url, filename=url_name(url)[:255])  # fmt: skip
        found.append({**kept, "at": at[file.message_id]})
    return sorted(found, key=lambda kept: int(kept["at"]))


def _file_rows(
    session: Session, message_ids: Iterable[str], belongs_to: str | None = None
) -> Sequence[tuple[MessageFile, UploadFile | None]]:
    """The messages' files with their uploads (None: gone), each message's in the order sent."""
    query = (
        select(MessageFile, UploadFile)
        .outerjoin(UploadFile, UploadFile.id == MessageFile.upload_file_id)
        .where(MessageFile.message_id.in_(list(message_ids)))
        .order_by(MessageFile.message_id, MessageFile.position)
    )
    if belongs_to is not None:
        query = query.where(MessageFile.belongs_to == belongs_to)
    return session.execute(query).tuples().all()


def write_message_files(
    session: Session, message_id: str, kept: Sequence[Mapping[str, Any]], created_at: datetime
) -> None:
    """The message's files, in the order sent (in the run's start transaction); past turns'
    files in `kept` (with `at`) are theirs, not written again."""
    kept = [file for file in kept if "at" not in file]
    if not kept:
        return
    session.execute(
        insert(MessageFile),
        [
            {
                "id": new_id(),
                "message_id": message_id,
                "position": position,
                "type": file["type"],
                "transfer_method": file["transfer_method"],
                "url": file["url"],
                "upload_file_id": file["upload_file_id"],
                "belongs_to": "user",
                "created_at": created_at,
            }
            for position, file in enumerate(kept)
        ],
    )


def message_files(
    session: Session, message_ids: Iterable[str], link: Callable[[str], str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Each message's `message_files` as Dify lists them (by message id; none: absent). An
    upload's `url` is `link(file id)` (a signed preview link) when given."""
    ids = list(message_ids)
    if not ids:
        return {}
    found: dict[str, list[dict[str, Any]]] = {}
    for file, upload in _file_rows(session, ids):
        url: str | None
        name: str | None
        if file.transfer_method == "local_file":
            url = link(upload.id) if upload is not None and link is not None else None
            name = upload.name if upload is not None else None
        else:
            url = file.url
            name = url_name(file.url or "") or None
        found.setdefault(file.message_id, []).append(
            {
                "id": file.id,
                "filename": name,
                "type": file.type,
                "url": url,
                "mime_type": upload.mime_type if upload is not None else None,
                "size": upload.size if upload is not None else -1,
                "transfer_method": file.transfer_method,
                "belongs_to": file.belongs_to,
                "upload_file_id": file.upload_file_id,
            }
        )
    return found


def load_upload(
    db: Database, storage: Storage, tenant_id: str, app_id: str, file_id: str
) -> tuple[UploadFile, bytes]:
    """An upload of the app and its bytes (LookupError: not the app's; FileNotFoundError: gone
    from storage), each error saying so in words. On the calling thread."""
    row = _upload_row(db, tenant_id, app_id, file_id)
    return row, _bytes(storage, row)


def _upload_row(db: Database, tenant_id: str, app_id: str, file_id: str) -> UploadFile:
    with db.reads() as session:
        row = uploads.find_file(session, tenant_id=tenant_id, app_id=app_id, file_id=file_id)
        if row is None:
            raise LookupError(f"File {file_id or '(no id)'} is not an upload of this app.")
        session.expunge(row)
    return row


def _bytes(storage: Storage, row: UploadFile) -> bytes:
    try:
        return storage.load(row.key)
    except FileNotFoundError:
        raise _gone(row) from None


def _gone(row: UploadFile) -> FileNotFoundError:
    return FileNotFoundError(f"The file {row.name} is gone from storage.")


class DocumentTexts:
    """Uploads' text as parsed for a run, kept in this process by workspace and content (the
    upload's sha256 and extension: one workspace's upload never tells, even by its timing,
    whether another's had the same bytes), least recently used out first past `max_chars` in all: a
    conversation's document is parsed once, not again on every turn that remembers it (PDF
    and Word are parsed in a child process, ~0.2-1 s each). A text longer than a quarter of
    the budget is not kept. Shared by the threads that read runs' files."""

    def __init__(self, max_chars: int = 16_000_000) -> None:
        self._max_chars = max_chars
        self._texts: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            text = self._texts.get(key)
            if text is not None:
                self._texts.move_to_end(key)
            return text

    def put(self, key: tuple[str, str, str], text: str) -> None:
        if len(text) > self._max_chars // 4:
            return
        with self._lock:
            if key in self._texts:
                return
            self._texts[key] = text
            self._chars += len(text)
            while self._chars > self._max_chars:
                self._chars -= len(self._texts.popitem(last=False)[1])


DOCUMENT_TEXTS = DocumentTexts()


def upload_text(
    db: Database, storage: Storage, tenant_id: str, app_id: str, file_id: str
) -> tuple[UploadFile, str]:
    """An upload of the app and its text, parsed as a dataset's document is (or as kept in
    `DOCUMENT_TEXTS`): LookupError (not the app's), FileNotFoundError (gone from storage, even
    when its text is kept) or IndexingError (cannot be read), each saying so in words. On the
    calling thread."""
    row = _upload_row(db, tenant_id, app_id, file_id)
    key = (row.tenant_id, row.hash, extension_of(row.name)) if row.hash else None
    text = DOCUMENT_TEXTS.get(key) if key else None
    if text is not None:
        if not storage.exists(row.key):
            raise _gone(row)
        return row, text
    text = extract(row.name, _bytes(storage, row)).text
    if key:
        DOCUMENT_TEXTS.put(key, text)
    return row, text


class FileParts:
    """Reads a run's files for the model (`core.apps.chat.Attach`), all on one thread hop."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self._db = db
        self._storage = storage

    async def __call__(self, spec: RunSpec, files: Sequence[dict[str, Any]]) -> list[TurnFiles]:
        return await asyncio.to_thread(self._read, spec.tenant_id, spec.app_id, files)

    def _read(
        self, tenant_id: str, app_id: str, files: Sequence[dict[str, Any]]
    ) -> list[TurnFiles]:
        """Each turn's files (grouped by `at`, in the order first met) read for the model. A
        file of this message that cannot be read fails the run (`AttachmentsFailed`, naming
        it); a past turn's is left out, so that one lost file does not end a conversation."""
        turns: dict[int | None, tuple[list[str], list[dict[str, Any]]]] = {}
        for file in files:
            at = file.get("at")
            texts, parts = turns.setdefault(at, ([], []))
            try:
                self._read_one(tenant_id, app_id, file, texts, parts)
            except AttachmentsFailed as error:
                if at is None:
                    raise
                logger.info("a past turn's file is left out of the prompt: %s", error.message)
        return [TurnFiles(at, "\n\n".join(texts), parts) for at, (texts, parts) in turns.items()]

    def _read_one(
        self,
        tenant_id: str,
        app_id: str,
        file: Mapping[str, Any],
        texts: list[str],
        parts: list[dict[str, Any]],
    ) -> None:
        kind, name = str(file.get("type")), str(file.get("filename") or "file")
        # The sender's name and URL, quoted: they cannot end the block they are named in.
        label = escape(name)
        if file.get("transfer_method") == "remote_url":
            if kind == "image":
                parts.append(_image(str(file["url"]), file))
            else:
                url = escape(str(file["url"]))
                texts.append(f'<file name="{label}" type="{kind}" url="{url}"></file>')
            return
        if kind not in ("image", "document"):
            texts.append(f'<file name="{label}" type="{kind}"></file>')
            return
        file_id = str(file["upload_file_id"])
        try:
            if kind == "image":
                row, data = load_upload(self._db, self._storage, tenant_id, app_id, file_id)
            else:
                row, text = upload_text(self._db, self._storage, tenant_id, app_id, file_id)
        except (LookupError, FileNotFoundError) as error:
            raise AttachmentsFailed(str(error)) from None
        except IndexingError as error:
            raise AttachmentsFailed(f"The file {name} could not be read: {error}") from error
        if kind == "image":
            mime = uploads.media_type(row)
            if not mime.startswith("image/"):
                extension = row.extension.lower()
                mime = f"image/{'jpeg' if extension == 'jpg' else extension}"
            encoded = base64.b64encode(data).decode("ascii")
            parts.append(_image(f"data:{mime};base64,{encoded}", file))
            return
        texts.append(f'<file name="{label}">\n{text[:DOCUMENT_CHARS]}\n</file>')


def _image(url: str, file: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": file.get("detail") or "high"}}
