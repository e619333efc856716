"""Documents of a dataset: created from text or a file (accepted = a `waiting` row, its file
stored and its indexing task's outbox row, all in one transaction, so nothing accepted is lost),
listed, read with their indexing progress, and deleted.

The indexing itself is `indexing.py`'s, on the `dataset` queue.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from conduit.core.rag.embed.local import CONTENT_TOKENS
from conduit.core.rag.extract import EXTENSIONS, extension_of
from conduit.core.rag.split import PARENT_MODES, ParentChild, Segmentation
from conduit.db.models import (
    ChildChunk,
    Dataset,
    DatasetProcessRule,
    Document,
    DocumentSegment,
    IndexingStatus,
    IndexingTechnique,
    ProcessMode,
    QaSource,
    UploadFile,
    utcnow,
)
from conduit.errors import (
    ArchivedDocumentImmutable,
    DocumentIndexing,
    FileAccessDenied,
    FilenameNotExists,
    FileNotFound,
    FileTooLarge,
    InvalidParam,
    NotFound,
    UnsupportedFileType,
)
from conduit.infra import signing
from conduit.infra.outbox import enqueue
from conduit.infra.storage import Storage
from conduit.services._like import contains
from conduit.services.datasets import keywords, metadata
from conduit.services.datasets.models import LOCAL_MODEL_ID, LOCAL_PROVIDER
from conduit.signals import signals

INDEX_TASK = "conduit.dataset.index_document"
REMOVE_FILE_TASK = "conduit.dataset.remove_file"
DOCUMENT_NOT_FOUND = "Document not found."
NAME_MAX = 255
PRE_PROCESSING_RULES = ("remove_extra_spaces", "remove_urls_emails", "remove_stopwords")
TEXT_MODEL, HIERARCHICAL_MODEL, QA_MODEL = "text_model", "hierarchical_model", "qa_model"
DOC_FORMS = (TEXT_MODEL, HIERARCHICAL_MODEL, QA_MODEL)
# Dify's automatic rule, cut to what the local model reads whole (256 tokens with [CLS], [SEP]).
AUTOMATIC_RULES: dict[str, Any] = {
    "pre_processing_rules": [
        {"id": "remove_extra_spaces", "enabled": True},
        {"id": "remove_urls_emails", "enabled": False},
    ],
    "segmentation": {"separator": "\n", "max_tokens": CONTENT_TOKENS, "chunk_overlap": 25},
}
# Dify's parent-child defaults (parents by blank lines up to 1,024 tokens, children by lines),
# the children cut to what the local model reads whole.
HIERARCHICAL_RULES: dict[str, Any] = {
    "pre_processing_rules": AUTOMATIC_RULES["pre_processing_rules"],
    "segmentation": {"separator": "\n\n", "max_tokens": 1024, "chunk_overlap": 0},
    "parent_mode": "paragraph",
    "subchunk_segmentation": {"separator": "\n", "max_tokens": CONTENT_TOKENS, "chunk_overlap": 0},
}
UNFINISHED = (
    IndexingStatus.WAITING,
    IndexingStatus.PARSING,
    IndexingStatus.CLEANING,
    IndexingStatus.SPLITTING,
    IndexingStatus.INDEXING,
)


def _readable(dataset: Dataset) -> Select[Document]:
    """The only way to select documents: one dataset's (which its caller could read)."""
    return select(Document).where(Document.dataset_id == dataset.id)


def get_document(session: Session, dataset: Dataset, document_id: str) -> Document:
    try:
        uuid.UUID(document_id)
    except ValueError:
        raise NotFound(DOCUMENT_NOT_FOUND) from None
    found = session.scalars(_readable(dataset).where(Document.id == document_id)).first()
    if found is None:
        raise NotFound(DOCUMENT_NOT_FOUND)
    return found


@dataclass(frozen=True, slots=True)
class DocumentRequest:
    """A create-by-text or create-by-file request's settings, validated (`doc_form` None: not
    given, the dataset's)."""

    indexing_technique: IndexingTechnique | None
    process_rule: tuple[ProcessMode, dict[str, Any]] | None
    doc_form: str | None
    doc_language: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> DocumentRequest:
        technique = body.get("indexing_technique")
        if technique is not None:
            try:
                technique = IndexingTechnique(technique)
            except ValueError:
                raise InvalidParam(
                    "indexing_technique must be one of: high_quality, economy."
                ) from None
        doc_form = body.get("doc_form") or None
        if doc_form is not None and doc_form not in DOC_FORMS:
            raise InvalidParam(f"doc_form must be one of: {', '.join(DOC_FORMS)}.")
        language = body.get("doc_language") or "English"
        if not isinstance(language, str) or len(language) > 32:
            raise InvalidParam("doc_language must be a language name of at most 32 characters.")
        rule = body.get("process_rule")
        return cls(
            indexing_technique=technique,
            process_rule=None if rule is None else parse_process_rule(rule),
            doc_form=doc_form,
            doc_language=language,
        )


def _segmentation(value: Any, where: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A `segmentation` object checked (`defaults` fill what it leaves out)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidParam(f"{where} must be an object.")
    merged = {**defaults, **{k: v for k, v in value.items() if v is not None}}
    separator = merged.get("separator", "\n")
    max_tokens = merged.get("max_tokens")
    overlap = merged.get("chunk_overlap", 0)
    if (
        not isinstance(separator, str)
        or not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not isinstance(overlap, int)
        or isinstance(overlap, bool)
    ):
        raise InvalidParam(
            f"{where} needs separator (a string), max_tokens and chunk_overlap (integers)."
        )
    try:
        Segmentation(
            mode="custom", separator=separator, max_tokens=max_tokens, chunk_overlap=overlap
        )
    except ValueError as exc:
        raise InvalidParam(f"{where}: {exc}.") from None
    return {"separator": separator, "max_tokens": max_tokens, "chunk_overlap": overlap}


def _pre_processing(rules: dict[str, Any], defaults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pre = rules.get("pre_processing_rules", defaults)
    if pre is None:
        pre = defaults
    if not isinstance(pre, list):
        raise InvalidParam("process_rule.rules.pre_processing_rules must be a list.")
    cleaned_pre = []
    for index, item in enumerate(pre):
        if (
            not isinstance(item, dict)
            or item.get("id") not in PRE_PROCESSING_RULES
            or not isinstance(item.get("enabled"), bool)
        ):
            raise InvalidParam(
                f"process_rule.rules.pre_processing_rules[{index}] must be "
                f"{{id: {' | '.join(PRE_PROCESSING_RULES)}, enabled: true | false}}."
            )
        cleaned_pre.append({"id": item["id"], "enabled": item["enabled"]})
    return cleaned_pre


def parse_process_rule(value: Any) -> tuple[ProcessMode, dict[str, Any]]:
    """Dify's `process_rule` → (mode, rules), the rules complete and checked."""
    if not isinstance(value, dict):
        raise InvalidParam("process_rule must be an object.")
    try:
        mode = ProcessMode(value.get("mode", "automatic"))
    except ValueError:
        raise InvalidParam("process_rule.mode must be automatic, custom or hierarchical.") from None
    if mode == ProcessMode.AUTOMATIC:
        return mode, AUTOMATIC_RULES
    rules = value.get("rules")
    if mode == ProcessMode.HIERARCHICAL:
        if rules is None:
            return mode, HIERARCHICAL_RULES
        if not isinstance(rules, dict):
            raise InvalidParam("process_rule.rules must be an object.")
        parent_mode = rules.get("parent_mode") or "paragraph"
        if parent_mode not in PARENT_MODES:
            raise InvalidParam(
                f"process_rule.rules.parent_mode must be one of: {', '.join(PARENT_MODES)}."
            )
        return mode, {
            "pre_processing_rules": _pre_processing(
                rules, HIERARCHICAL_RULES["pre_processing_rules"]
            ),
            "segmentation": _segmentation(
                rules.get("segmentation"),
                "process_rule.rules.segmentation",
                HIERARCHICAL_RULES["segmentation"],
            ),
            "parent_mode": parent_mode,
            "subchunk_segmentation": _segmentation(
                rules.get("subchunk_segmentation"),
                "process_rule.rules.subchunk_segmentation",
                HIERARCHICAL_RULES["subchunk_segmentation"],
            ),
        }
    if not isinstance(rules, dict):
        raise InvalidParam("process_rule.rules is required in custom mode.")
    if not isinstance(rules.get("segmentation"), dict):
        raise InvalidParam("process_rule.rules.segmentation is required in custom mode.")
    return mode, {
        "pre_processing_rules": _pre_processing(rules, []),
        "segmentation": _segmentation(
            rules["segmentation"], "process_rule.rules.segmentation", {"max_tokens": None}
        ),
    }


def parent_child_rule(rules: dict[str, Any]) -> ParentChild:
    """A stored hierarchical rule as the splitter takes it."""
    parent, child = rules["segmentation"], rules["subchunk_segmentation"]
    return ParentChild(
        parent_mode=rules.get("parent_mode", "paragraph"),
        parent=Segmentation(
            mode="custom",
            separator=parent.get("separator", "\n\n"),
            max_tokens=parent["max_tokens"],
            chunk_overlap=parent.get("chunk_overlap", 0),
        ),
        child=Segmentation(
            mode="custom",
            separator=child.get("separator", "\n"),
            max_tokens=child["max_tokens"],
            chunk_overlap=child.get("chunk_overlap", 0),
        ),
    )


def check_form(
    dataset: Dataset,
    doc_form: str,
    mode: ProcessMode,
    technique: IndexingTechnique | None,
    *,
    first: bool,
) -> None:
    """Dify's rules for a document's form: one form per dataset (set by its first document);
    parent-child documents with a hierarchical rule, and only with embeddings."""
    if not first and doc_form != dataset.doc_form:
        raise InvalidParam(
            f"doc_form is different from the dataset doc_form ({dataset.doc_form}): a "
            "dataset's documents all have its form."
        )
    hierarchical = doc_form == HIERARCHICAL_MODEL
    if hierarchical != (mode == ProcessMode.HIERARCHICAL):
        raise InvalidParam(
            "process_rule.mode hierarchical goes with doc_form hierarchical_model (and "
            f"only with it); this document's doc_form is {doc_form} and its rule's mode "
            f"{mode.value}."
        )
    if hierarchical and technique != IndexingTechnique.HIGH_QUALITY:
        raise InvalidParam(
            "hierarchical_model (parent-child) documents need indexing_technique "
            "high_quality: their child chunks are searched by their embeddings."
        )


def refuse_external(dataset: Dataset) -> None:
    """Documents belong to datasets Conduit indexes: an external dataset's live in its
    service (Dify's 400)."""
    if dataset.provider == "external":
        raise InvalidParam(
            "External datasets are not supported: an external dataset's documents live in "
            "its external knowledge service."
        )


def new_batch() -> str:
    """Dify's batch: the time to the second and six random digits (20 characters)."""
    return utcnow().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**6):06d}"


def check_upload(filename: str | None, size: int, *, limit_mb: int) -> str:
    """The file's extension, or the 4xx a user should see (before anything is stored)."""
    if not filename:
        raise FilenameNotExists()
    if "/" in filename or "\\" in filename or "\x00" in filename or len(filename) > NAME_MAX:
        raise InvalidParam(
            f"filename must be a plain name of at most {NAME_MAX} characters (no / or \\)."
        )
    extension = extension_of(filename)
    if extension not in EXTENSIONS:
        raise UnsupportedFileType(
            f"File type not allowed: .{extension or '(none)'} (supported: "
            f"{', '.join(sorted(EXTENSIONS))})."
        )
    if size > limit_mb * 1024 * 1024:
        raise FileTooLarge(f"File size exceeded. {size} > {limit_mb} MB")
    if size == 0:
        raise InvalidParam(f"'{filename}' is empty.")
    return extension


def create_document(
    session: Session,
    storage: Storage,
    dataset: Dataset,
    *,
    account_id: str,
    filename: str,
    data: bytes,
    mime_type: str | None,
    request: DocumentRequest,
    limit_mb: int,
    created_from: str = "api",
    batch: str | None = None,
) -> tuple[Document, str]:
    """Store the file and a `waiting` document, and queue its indexing; (document, batch).
    `batch`: one shared with the other documents of the same upload (else a new one)."""
    refuse_external(dataset)
    extension = check_upload(filename, len(data), limit_mb=limit_mb)
    if session.get_bind().dialect.name == "postgresql":
        # One upload at a time per dataset: its first document sets the dataset's form (and
        # technique), and each takes the next position (SQLite's write lock serialises them).
        session.refresh(dataset, with_for_update=True)
    technique = request.indexing_technique or dataset.indexing_technique
    if technique is None:
        raise InvalidParam("indexing_technique is required.")
    first = (
        session.scalar(select(Document.id).where(Document.dataset_id == dataset.id).limit(1))
        is None
    )
    doc_form = request.doc_form or (TEXT_MODEL if first else dataset.doc_form)
    rule_id = _process_rule_id(
        session, dataset, request, account_id,
        check=lambda mode: check_form(
            dataset, doc_form, mode, dataset.indexing_technique or technique, first=first
        ),
    )  # fmt: skip
    if first:
        dataset.doc_form = doc_form
    if dataset.indexing_technique is None:
        dataset.indexing_technique = technique
    if technique == IndexingTechnique.HIGH_QUALITY and not dataset.embedding_model:
        dataset.embedding_model = LOCAL_MODEL_ID
        dataset.embedding_model_provider = LOCAL_PROVIDER
    file_id = _store_file(
        session, storage, dataset.tenant_id, account_id, filename, extension, data, mime_type
    )
    now = utcnow()
    position = (
        session.scalar(select(func.max(Document.position)).where(Document.dataset_id == dataset.id))
        or 0
    ) + 1
    batch = batch or new_batch()
    document = Document(
        tenant_id=dataset.tenant_id,
        dataset_id=dataset.id,
        position=position,
        data_source_type="upload_file",
        data_source_info={"upload_file_id": file_id},
        dataset_process_rule_id=rule_id,
        batch=batch,
        name=filename,
        created_from=created_from,
        created_by=account_id,
        doc_form=doc_form,
        doc_language=request.doc_language,
        due_at=now,
    )
    session.add(document)
    session.flush()
    enqueue(
        session,
        INDEX_TASK,
        queue="dataset",
        kwargs={"document_id": document.id, "generation": document.index_generation},
    )
    return document, batch


def _store_file(
    session: Session,
    storage: Storage,
    tenant_id: str,
    account_id: str,
    filename: str,
    extension: str,
    data: bytes,
    mime_type: str | None,
) -> str:
    """Save the bytes, then their `upload_files` row (an account's, so no app route serves
    it); the row's id."""
    file_id = str(uuid.uuid4())
    key = f"upload_files/{tenant_id}/{file_id}.{extension}"
    storage.save(key, data)
    session.add(
        UploadFile(
            id=file_id,
            tenant_id=tenant_id,
            storage_type="local",
            key=key,
            name=filename,
            size=len(data),
            extension=extension,
            mime_type=mime_type,
            hash=hashlib.sha256(data).hexdigest(),
            created_by_role="account",
            created_by=account_id,
            used=True,
            created_at=utcnow(),
        )
    )
    return file_id


def _process_rule_id(
    session: Session,
    dataset: Dataset,
    request: DocumentRequest,
    account_id: str,
    *,
    check: Callable[[ProcessMode], None],
) -> str:
    """The request's rule (written), else the dataset's latest; `check` sees its mode first."""
    if request.process_rule is None:
        latest = session.execute(
            select(DatasetProcessRule.id, DatasetProcessRule.mode)
            .where(DatasetProcessRule.dataset_id == dataset.id)
            .order_by(DatasetProcessRule.created_at.desc())
            .limit(1)
        ).first()
        if latest is None:
            raise InvalidParam("process_rule is required.")
        check(latest.mode)
        return str(latest.id)
    mode, rules = request.process_rule
    check(mode)
    rule = DatasetProcessRule(dataset_id=dataset.id, mode=mode, rules=rules, created_by=account_id)
    session.add(rule)
    session.flush()
    return rule.id


STATUS_ACTIONS = ("enable", "disable", "archive", "un_archive")


def set_status(
    session: Session, dataset: Dataset, action: str, document_ids: Any, *, account_id: str
) -> None:
    """Dify's batch switch of documents: enable, disable (searchable or not), archive,
    un_archive. Every id must be one of the dataset's; a document still indexing cannot be
    switched on or off, an archived one cannot be switched on or off either."""
    if action not in STATUS_ACTIONS:
        raise InvalidParam(f"action must be one of: {', '.join(STATUS_ACTIONS)}.")
    if (
        not isinstance(document_ids, list)
        or not document_ids
        or not all(isinstance(i, str) for i in document_ids)
    ):
        raise InvalidParam("document_ids must be a non-empty list of document ids.")
    found = [get_document(session, dataset, document_id) for document_id in document_ids]
    now = utcnow()
    for document in found:
        if action in ("enable", "disable"):
            if document.indexing_status != IndexingStatus.COMPLETED:
                raise DocumentIndexing(
                    f"Document '{document.name}' is being processed and cannot be "
                    f"{action}d until it is."
                )
            if document.archived:
                raise ArchivedDocumentImmutable()
            document.enabled = action == "enable"
            document.disabled_at = None if document.enabled else now
            document.disabled_by = None if document.enabled else account_id
        else:
            document.archived = action == "archive"
            document.archived_at = now if document.archived else None
            document.archived_by = account_id if document.archived else None
            document.archived_reason = "rule_modified" if document.archived else None
        document.updated_at = now
    session.flush()


def update_document(
    session: Session,
    storage: Storage,
    document: Document,
    *,
    account_id: str,
    name: str | None,
    upload: tuple[str, bytes, str | None] | None,
    process_rule: tuple[ProcessMode, dict[str, Any]] | None,
    limit_mb: int,
) -> tuple[Document, str]:
    """A new name, and (with new content or a new rule) a new indexing of the document: the
    next generation, its own batch and task; the old generation's segments, index rows and
    file go, and a task still holding the old one loses its lease (the epoch moves on)."""
    if document.archived:
        raise ArchivedDocumentImmutable()
    if name is not None:
        if not name.strip() or len(name) > NAME_MAX:
            raise InvalidParam(f"name must be 1 to {NAME_MAX} characters.")
        document.name = name.strip()
    if process_rule is not None and (process_rule[0] == ProcessMode.HIERARCHICAL) != (
        document.doc_form == HIERARCHICAL_MODEL
    ):
        raise InvalidParam(
            "process_rule.mode hierarchical goes with doc_form hierarchical_model (and only "
            f"with it); this document's doc_form is {document.doc_form}."
        )
    if upload is None and process_rule is None:
        session.flush()
        return document, document.batch
    if document.indexing_status in UNFINISHED:
        raise DocumentIndexing()
    now = utcnow()
    if upload is not None:
        filename, data, mime_type = upload
        extension = check_upload(filename, len(data), limit_mb=limit_mb)
        _forget_files(session, [document])
        file_id = _store_file(
            session, storage, document.tenant_id, account_id, filename, extension, data, mime_type
        )
        document.data_source_info = {"upload_file_id": file_id}
        document.name = name.strip() if name else filename
    if process_rule is not None:
        mode, rules = process_rule
        rule = DatasetProcessRule(
            dataset_id=document.dataset_id, mode=mode, rules=rules, created_by=account_id
        )
        session.add(rule)
        session.flush()
        document.dataset_process_rule_id = rule.id
    keywords.remove_document(session, document.id)
    session.execute(delete(DocumentSegment).where(DocumentSegment.document_id == document.id))
    session.execute(delete(QaSource).where(QaSource.document_id == document.id))
    document.index_generation += 1
    document.lease_epoch += 1
    document.lease_owner = None
    document.batch = new_batch()
    document.indexing_status = IndexingStatus.WAITING
    for stamp in (
        "processing_started_at",
        "parsing_completed_at",
        "cleaning_completed_at",
        "splitting_completed_at",
        "completed_at",
        "stopped_at",
        "paused_at",
        "error",
        "last_failure",
        "indexing_latency",
    ):
        setattr(document, stamp, None)
    document.total_segments = document.completed_segments = 0
    document.word_count = document.tokens = document.attempts = document.resumes = 0
    document.due_at = now
    document.updated_at = now
    session.flush()
    enqueue(
        session,
        INDEX_TASK,
        queue="dataset",
        kwargs={"document_id": document.id, "generation": document.index_generation},
    )
    return document, document.batch


def delete_document(session: Session, document: Document) -> None:
    """The document, its segments (cascade) and its file's row now; the file's bytes by an
    outbox task, so that a crash after the commit cannot leave them behind."""
    _forget_files(session, [document])
    keywords.remove_document(session, document.id)
    session.delete(document)
    signals.send_after_commit(session, signals.document_was_deleted, document)


def forget_dataset_files(session: Session, dataset: Dataset) -> None:
    """Before a dataset's delete: its documents' file rows now, their bytes by outbox tasks."""
    _forget_files(session, list(session.scalars(_readable(dataset))))


def _forget_files(session: Session, documents: list[Document]) -> None:
    file_ids = [
        str((d.data_source_info or {}).get("upload_file_id"))
        for d in documents
        if (d.data_source_info or {}).get("upload_file_id")
    ]
    if not file_ids:
        return
    for row in session.scalars(select(UploadFile).where(UploadFile.id.in_(file_ids))):
        enqueue(session, REMOVE_FILE_TASK, queue="dataset", kwargs={"key": row.key})
        session.delete(row)


DISPLAY_STATUSES = ("queuing", "paused", "indexing", "error", "available", "disabled", "archived")


def display_status(document: Document) -> str:
    """Dify's `display_status`, from the status and the switches."""
    status = document.indexing_status
    if status == IndexingStatus.WAITING:
        return "queuing"
    if document.is_paused or status == IndexingStatus.PAUSED:
        return "paused"
    if status in UNFINISHED:
        return "indexing"
    if status == IndexingStatus.ERROR:
        return "error"
    if document.archived:
        return "archived"
    return "available" if document.enabled else "disabled"


def list_documents(
    session: Session,
    dataset: Dataset,
    *,
    page: int,
    limit: int,
    keyword: str | None,
    status: str | None,
) -> tuple[list[Document], int]:
    query = _readable(dataset)
    if keyword:
        query = query.where(contains(Document.name, keyword))
    if status is not None:
        if status not in DISPLAY_STATUSES:
            raise InvalidParam(f"status must be one of: {', '.join(DISPLAY_STATUSES)}.")
        query = query.where(_display_filter(status))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(Document.position.desc(), Document.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(items), int(total)


def _display_filter(status: str) -> Any:
    done = Document.indexing_status == IndexingStatus.COMPLETED
    return {
        "queuing": Document.indexing_status == IndexingStatus.WAITING,
        "paused": Document.is_paused.is_(True),
        "indexing": Document.indexing_status.in_(UNFINISHED[1:]) & Document.is_paused.is_(False),
        "error": Document.indexing_status == IndexingStatus.ERROR,
        "available": done & Document.enabled.is_(True) & Document.archived.is_(False),
        "disabled": done & Document.enabled.is_(False) & Document.archived.is_(False),
        "archived": done & Document.archived.is_(True),
    }[status]


def batch_documents(session: Session, dataset: Dataset, batch: str) -> list[Document]:
    found = list(
        session.scalars(
            _readable(dataset).where(Document.batch == batch).order_by(Document.position)
        )
    )
    if not found:
        raise NotFound("Documents not found.")
    return found


def _ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def indexing_status(document: Document) -> dict[str, Any]:
    """Dify's indexing-status item; Conduit adds why a document is waiting (`delay_reason`)
    and when it is tried next (`next_attempt_at`)."""
    unfinished = document.indexing_status in UNFINISHED and not document.is_paused
    return {
        "id": document.id,
        "indexing_status": (
            IndexingStatus.PAUSED.value if document.is_paused else document.indexing_status.value
        ),
        "processing_started_at": _ts(document.processing_started_at),
        "parsing_completed_at": _ts(document.parsing_completed_at),
        "cleaning_completed_at": _ts(document.cleaning_completed_at),
        "splitting_completed_at": _ts(document.splitting_completed_at),
        "completed_at": _ts(document.completed_at),
        "paused_at": _ts(document.paused_at),
        "error": document.error,
        "stopped_at": _ts(document.stopped_at),
        "completed_segments": document.completed_segments,
        "total_segments": document.total_segments,
        "delay_reason": document.last_failure if unfinished else None,
        "next_attempt_at": _ts(document.due_at) if unfinished and document.attempts else None,
    }


def document_views(session: Session, documents: list[Document]) -> list[dict[str, Any]]:
    """Dify's Document objects (of one dataset), with their files and metadata values."""
    if not documents:
        return []
    files = _files(session, documents)
    dataset = session.get(Dataset, documents[0].dataset_id)
    values = metadata.document_views(session, dataset, documents) if dataset else {}
    return [
        {**_document_view(d, files.get(_file_id(d) or "")), "doc_metadata": values.get(d.id, [])}
        for d in documents
    ]


def document_detail(session: Session, document: Document) -> dict[str, Any]:
    (view,) = document_views(session, [document])
    count, length = session.execute(
        select(func.count(), func.avg(DocumentSegment.word_count)).where(
            DocumentSegment.document_id == document.id,
            DocumentSegment.generation == document.index_generation,
        )
    ).one()
    rule = (
        session.get(DatasetProcessRule, document.dataset_process_rule_id)
        if document.dataset_process_rule_id
        else None
    )
    rule_view = {"mode": rule.mode.value, "rules": rule.rules} if rule is not None else None
    return {
        **view,
        "completed_at": _ts(document.completed_at),
        "updated_at": _ts(document.updated_at),
        "indexing_latency": document.indexing_latency,
        "segment_count": int(count or 0),
        "average_segment_length": int(length or 0),
        "dataset_process_rule": rule_view,
        "document_process_rule": rule_view,
        "doc_language": document.doc_language,
        "doc_type": document.doc_type,
    }


def _file_id(document: Document) -> str | None:
    value = (document.data_source_info or {}).get("upload_file_id")
    return str(value) if value else None


def _files(session: Session, documents: list[Document]) -> dict[str, UploadFile]:
    ids = [i for i in (_file_id(d) for d in documents) if i]
    if not ids:
        return {}
    return {
        row.id: row for row in session.scalars(select(UploadFile).where(UploadFile.id.in_(ids)))
    }


def _document_view(document: Document, upload: UploadFile | None) -> dict[str, Any]:
    detail = (
        {
            "upload_file": {
                "id": upload.id,
                "name": upload.name,
                "size": upload.size,
                "extension": upload.extension,
                "mime_type": upload.mime_type,
                "created_by": upload.created_by,
                "created_at": _ts(upload.created_at),
            }
        }
        if upload is not None
        else None
    )
    return {
        "id": document.id,
        "position": document.position,
        "data_source_type": document.data_source_type,
        "data_source_info": document.data_source_info,
        "data_source_detail_dict": detail,
        "dataset_process_rule_id": document.dataset_process_rule_id,
        "name": document.name,
        "created_from": document.created_from,
        "created_by": document.created_by,
        "created_at": _ts(document.created_at),
        "tokens": document.tokens,
        "indexing_status": document.indexing_status.value,
        "error": document.error,
        "enabled": document.enabled,
        "disabled_at": _ts(document.disabled_at),
        "disabled_by": document.disabled_by,
        "archived": document.archived,
        "display_status": display_status(document),
        "word_count": document.word_count,
        "hit_count": 0,
        "doc_form": document.doc_form,
        "doc_metadata": [],  # the values, by `document_views`
        "summary_index_status": None,
        "need_summary": False,
    }


def list_segments(
    session: Session,
    document: Document,
    *,
    page: int,
    limit: int,
    keyword: str | None,
    status: str | None,
) -> tuple[list[DocumentSegment], int]:
    query = select(DocumentSegment).where(
        DocumentSegment.document_id == document.id,
        DocumentSegment.generation == document.index_generation,
    )
    if keyword:
        query = query.where(contains(DocumentSegment.content, keyword))
    if status:
        query = query.where(DocumentSegment.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(DocumentSegment.position).offset((page - 1) * limit).limit(limit)
    )
    return list(items), int(total)


def children_of(session: Session, segment_ids: list[str]) -> dict[str, list[ChildChunk]]:
    """The child chunks of segments, in order, by segment id (none for a text_model
    document's)."""
    found: dict[str, list[ChildChunk]] = {segment_id: [] for segment_id in segment_ids}
    if segment_ids:
        for chunk in session.scalars(
            select(ChildChunk)
            .where(ChildChunk.segment_id.in_(segment_ids))
            .order_by(ChildChunk.segment_id, ChildChunk.position)
        ):
            found[chunk.segment_id].append(chunk)
    return found


def child_view(chunk: ChildChunk) -> dict[str, Any]:
    """Dify's ChildChunk."""
    return {
        "id": chunk.id,
        "segment_id": chunk.segment_id,
        "content": chunk.content,
        "position": chunk.position,
        "word_count": chunk.word_count,
        "type": chunk.type,
        "created_at": _ts(chunk.created_at),
        "updated_at": _ts(chunk.updated_at),
    }


def segment_views(session: Session, segments: Sequence[DocumentSegment]) -> list[dict[str, Any]]:
    """Segments as Dify shows them, each with its child chunks."""
    children = children_of(session, [segment.id for segment in segments])
    return [segment_view(segment, children[segment.id]) for segment in segments]


def segment_view(segment: DocumentSegment, children: Sequence[ChildChunk] = ()) -> dict[str, Any]:
    return {
        "id": segment.id,
        "position": segment.position,
        "document_id": segment.document_id,
        "content": segment.content,
        "sign_content": segment.content,
        "answer": segment.answer,
        "word_count": segment.word_count,
        "tokens": segment.tokens,
        "keywords": segment.keywords or [],
        "index_node_id": segment.index_node_id,
        "index_node_hash": segment.index_node_hash,
        "hit_count": segment.hit_count,
        "enabled": segment.enabled,
        "disabled_at": _ts(segment.disabled_at),
        "disabled_by": segment.disabled_by,
        "status": segment.status,
        "created_by": segment.created_by,
        "created_at": _ts(segment.created_at),
        "updated_at": _ts(segment.updated_at),
        "updated_by": segment.updated_by,
        "indexing_at": _ts(segment.indexing_at),
        "completed_at": _ts(segment.completed_at),
        "error": segment.error,
        "stopped_at": _ts(segment.stopped_at),
        "child_chunks": [child_view(chunk) for chunk in children],
        "attachments": [],
        "summary": None,
    }


# --- downloads ---------------------------------------------------------------------------------

ZIP_MAX_DOCUMENTS = 100


def document_file(session: Session, document: Document) -> UploadFile:
    """The file a document was made from (404 when it has none left)."""
    file_id = _file_id(document)
    row = session.get(UploadFile, file_id) if file_id else None
    if row is None or row.tenant_id != document.tenant_id:
        raise NotFound("The document's file is gone.")
    return row


def signed_document_file(
    session: Session, storage: Storage, *, file_id: str, signed: signing.Signed, secret: str,
    max_age: float,
) -> tuple[UploadFile, bytes]:  # fmt: skip
    """A document's file by a signed link (403 when the signature is wrong or expired, 404
    when the file is gone or is no document's)."""
    try:
        signing.verify_file(file_id, signed, secret=secret, max_age=max_age)
    except signing.ExpiredSignature:
        raise FileAccessDenied("The file link has expired.") from None
    except signing.SignatureError:
        raise FileAccessDenied("The file link's signature is invalid.") from None
    row = session.get(UploadFile, file_id) if _is_uuid(file_id) else None
    if row is None or row.created_by_role != "account":
        raise FileNotFound()
    try:
        return row, storage.load(row.key)
    except FileNotFoundError:
        raise FileNotFound() from None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def zip_documents(session: Session, storage: Storage, dataset: Dataset, document_ids: Any) -> bytes:
    """A zip of the documents' files (names made unique within it)."""
    if not isinstance(document_ids, list) or not document_ids:
        raise InvalidParam("document_ids is required: a list of document ids.")
    if len(document_ids) > ZIP_MAX_DOCUMENTS:
        raise InvalidParam(f"document_ids: at most {ZIP_MAX_DOCUMENTS} documents.")
    found = [get_document(session, dataset, str(i)) for i in dict.fromkeys(document_ids)]
    out = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for document in found:
            row = document_file(session, document)
            try:
                data = storage.load(row.key)
            except FileNotFoundError:
                raise NotFound(f"The file of document {document.id} is gone.") from None
            name = _unique(row.name or f"{document.id}", used)
            archive.writestr(name, data)
    return out.getvalue()


def _unique(name: str, used: set[str]) -> str:
    safe = name.replace("/", "_").replace("\\", "_") or "document"
    stem, dot, extension = safe.rpartition(".")
    candidate, n = safe, 1
    while candidate in used:
        n += 1
        candidate = f"{stem} ({n}).{extension}" if dot else f"{safe} ({n})"
    used.add(candidate)
    return candidate
