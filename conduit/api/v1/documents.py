"""The Knowledge API's documents and segments (`/v1/datasets/{dataset_id}/…`): create from text
or a file, follow indexing, list, read, delete. Dify's paths, with its underscore aliases."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from conduit.api.deps import DatasetCaller, DbSession
from conduit.api.files import FILE_HEADERS, Links, content_disposition
from conduit.api.responses import page_body
from conduit.api.v1.files import UploadForm, read_upload
from conduit.api.v1.schemas import JsonBody, int_query, optional
from conduit.db.models import ChildChunk, Dataset, Document, DocumentSegment
from conduit.errors import InvalidParam
from conduit.services.datasets import datasets, documents, external, retrieval, segments
from conduit.services.datasets.documents import DocumentRequest

router = APIRouter(prefix="/datasets/{dataset_id}", tags=["knowledge: documents"])
Text = Annotated[str | None, Query()]
METADATA_CHOICES = ("all", "only", "without")  # a document's `?metadata=`


class InvalidMetadata(InvalidParam):
    code = "invalid_metadata"


def _dataset(session: DbSession, caller: DatasetCaller, dataset_id: str) -> Dataset:
    return datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)


def _form_settings(form: UploadForm) -> dict[str, Any]:
    """The multipart `data` part: a JSON object as a string (absent: {})."""
    try:
        settings = orjson.loads(form.data_field) if form.data_field else {}
    except orjson.JSONDecodeError:
        raise InvalidParam("data must be a JSON object (a string in the form).") from None
    if not isinstance(settings, dict):
        raise InvalidParam("data must be a JSON object (a string in the form).")
    return settings


def _created(session: DbSession, document: Any, batch: str) -> dict[str, Any]:
    return {"document": documents.document_views(session, [document])[0], "batch": batch}


@router.post("/document/create-by-text")
@router.post("/document/create_by_text", include_in_schema=False)
def create_by_text(
    dataset_id: str, caller: DatasetCaller, session: DbSession, request: Request, body: JsonBody
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    name, text = body.get("name"), body.get("text")
    if not isinstance(name, str) or not name.strip():
        raise InvalidParam("name is required.")
    if not isinstance(text, str) or not text.strip():
        raise InvalidParam("text is required.")
    filename = name.strip() if name.strip().lower().endswith(".txt") else f"{name.strip()}.txt"
    document, batch = documents.create_document(
        session,
        request.app.state.storage,
        dataset,
        account_id=caller.account_id,
        filename=filename,
        data=text.encode("utf-8"),
        mime_type="text/plain",
        request=DocumentRequest.parse(body),
        limit_mb=request.app.state.settings.upload.file_size_limit_mb,
    )
    return _created(session, document, batch)


@router.post("/document/create-by-file")
@router.post("/document/create_by_file", include_in_schema=False)
def create_by_file(
    dataset_id: str,
    caller: DatasetCaller,
    session: DbSession,
    request: Request,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    settings = _form_settings(form)
    document, batch = documents.create_document(
        session,
        request.app.state.storage,
        dataset,
        account_id=caller.account_id,
        filename=form.filename or "",
        data=form.data,
        mime_type=form.mime_type,
        request=DocumentRequest.parse(settings),
        limit_mb=request.app.state.settings.upload.file_size_limit_mb,
    )
    return _created(session, document, batch)


@router.patch("/documents/status/{action}")
def set_status(
    dataset_id: str, action: str, caller: DatasetCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    """Switch documents on or off for search (`enable`, `disable`), or `archive` them."""
    dataset = _dataset(session, caller, dataset_id)
    documents.set_status(
        session, dataset, action, body.get("document_ids"), account_id=caller.account_id
    )
    return {"result": "success"}


@router.post("/documents/{document_id}/update-by-text")
@router.post("/documents/{document_id}/update_by_text", include_in_schema=False)
@router.patch("/documents/{document_id}")
def update_by_text(
    dataset_id: str,
    document_id: str,
    caller: DatasetCaller,
    session: DbSession,
    request: Request,
    body: JsonBody,
) -> dict[str, Any]:
    """A document's new name, text or rule (`PATCH …/documents/{id}` is the same change):
    a new text or rule indexes it again."""
    dataset = _dataset(session, caller, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    name, text = body.get("name"), body.get("text")
    if name is not None and not isinstance(name, str):
        raise InvalidParam("name must be a string.")
    upload = None
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidParam("text must be a non-empty string.")
        if not name or not name.strip():
            raise InvalidParam("name is required when text is given.")
        filename = name.strip() if name.strip().lower().endswith(".txt") else f"{name.strip()}.txt"
        upload = (filename, text.encode("utf-8"), "text/plain")
        name = filename
    rule = body.get("process_rule")
    document, batch = documents.update_document(
        session,
        request.app.state.storage,
        document,
        account_id=caller.account_id,
        name=name,
        upload=upload,
        process_rule=None if rule is None else documents.parse_process_rule(rule),
        limit_mb=request.app.state.settings.upload.file_size_limit_mb,
    )
    return _created(session, document, batch)


@router.post("/documents/{document_id}/update-by-file")
@router.post("/documents/{document_id}/update_by_file", include_in_schema=False)
def update_by_file(
    dataset_id: str,
    document_id: str,
    caller: DatasetCaller,
    session: DbSession,
    request: Request,
    form: Annotated[UploadForm, Depends(read_upload)],
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    settings = _form_settings(form)
    rule = settings.get("process_rule")
    document, batch = documents.update_document(
        session,
        request.app.state.storage,
        document,
        account_id=caller.account_id,
        name=None,
        upload=(form.filename or "", form.data, form.mime_type),
        process_rule=None if rule is None else documents.parse_process_rule(rule),
        limit_mb=request.app.state.settings.upload.file_size_limit_mb,
    )
    return _created(session, document, batch)


@router.get("/documents/{batch}/indexing-status")
def indexing_status(
    dataset_id: str, batch: str, caller: DatasetCaller, session: DbSession
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    found = documents.batch_documents(session, dataset, batch)
    return {"data": [documents.indexing_status(d) for d in found]}


@router.get("/documents")
def list_documents(
    dataset_id: str,
    caller: DatasetCaller,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    status: Text = None,
) -> dict[str, Any]:
    return document_page(
        session, _dataset(session, caller, dataset_id), page, limit, keyword, status
    )


def document_page(
    session: Session, dataset: Dataset, page: str | None, limit: str | None,
    keyword: str | None, status: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A page of the dataset's documents, as Dify lists them (the Knowledge API's and the
    console's)."""
    page_number = int_query("page", page, default=1, low=1, high=1_000_000)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, total = documents.list_documents(
        session,
        dataset,
        page=page_number,
        limit=page_size,
        keyword=optional(keyword),
        status=optional(status),
    )
    return page_body(
        documents.document_views(session, items), page=page_number, limit=page_size, total=total
    )


@router.get("/documents/{document_id}")
def get_document(
    dataset_id: str,
    document_id: str,
    caller: DatasetCaller,
    session: DbSession,
    metadata: Text = None,
) -> dict[str, Any]:
    """The document's detail; `metadata=only` is its id, type and metadata values alone,
    `without` the detail without them (Dify's choices; `all`, the default, both)."""
    shown = metadata or "all"
    if shown not in METADATA_CHOICES:
        raise InvalidMetadata(f"Invalid metadata value: {shown}")
    dataset = _dataset(session, caller, dataset_id)
    detail = documents.document_detail(
        session, documents.get_document(session, dataset, document_id)
    )
    if shown == "only":
        return {k: detail[k] for k in ("id", "doc_type", "doc_metadata")}
    if shown == "without":
        return {k: v for k, v in detail.items() if k not in ("doc_type", "doc_metadata")}
    return detail


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(
    dataset_id: str, document_id: str, caller: DatasetCaller, session: DbSession
) -> Response:
    dataset = _dataset(session, caller, dataset_id)
    documents.delete_document(session, documents.get_document(session, dataset, document_id))
    return Response(status_code=204)


@router.get("/documents/{document_id}/segments")
def list_segments(
    dataset_id: str,
    document_id: str,
    caller: DatasetCaller,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    status: Text = None,
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    return segment_page(session, document, page, limit, keyword, status)


def segment_page(
    session: Session, document: Document, page: str | None, limit: str | None,
    keyword: str | None, status: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A page of the document's segments, as Dify lists them (the Knowledge API's and the
    console's)."""
    page_number = int_query("page", page, default=1, low=1, high=1_000_000)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, total = documents.list_segments(
        session,
        document,
        page=page_number,
        limit=page_size,
        keyword=optional(keyword),
        status=optional(status),
    )
    return {
        "data": documents.segment_views(session, items),
        "doc_form": document.doc_form,
        "total": total,
        "has_more": page_number * page_size < total,
        "limit": page_size,
        "page": page_number,
    }


def _segment_reply(dataset: Dataset, data: Any) -> dict[str, Any]:
    return {"data": data, "doc_form": dataset.doc_form}


@router.post("/documents/{document_id}/segments")
def add_segments(
    dataset_id: str,
    document_id: str,
    caller: DatasetCaller,
    session: DbSession,
    request: Request,
    body: JsonBody,
) -> dict[str, Any]:
    """Add segments to a completed document (embedded and searchable on return)."""
    dataset = _dataset(session, caller, dataset_id)
    items = segments.parse_new_segments(body)
    document = segments.editable_document(session, dataset, document_id)  # refused first
    segments.check_answers(document, items, creating=True)
    model = request.app.state.retriever.segment_model(session, dataset)
    contents = [item.content or "" for item in items]
    children = segments.plan_children(session, document, model, contents)
    session.commit()  # nothing written yet: the model does not run inside a transaction
    vectors = segments.embed_texts(
        dataset, model, segments.texts_to_embed(contents, children), children=children is not None
    )
    document = segments.editable_document(session, dataset, document_id)
    made = segments.add_segments(
        session, dataset, document, items, model,
        account_id=caller.account_id, vectors=vectors, children=children,
    )  # fmt: skip
    return _segment_reply(dataset, documents.segment_views(session, made))


@router.get("/documents/{document_id}/segments/{segment_id}")
def get_segment(
    dataset_id: str, document_id: str, segment_id: str, caller: DatasetCaller, session: DbSession
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    found = segments.get_segment(session, document, segment_id)
    return _segment_reply(dataset, documents.segment_views(session, [found])[0])


@router.post("/documents/{document_id}/segments/{segment_id}")
def update_segment(
    dataset_id: str,
    document_id: str,
    segment_id: str,
    caller: DatasetCaller,
    session: DbSession,
    request: Request,
    body: JsonBody,
) -> dict[str, Any]:
    """Dify's segment update: `{"segment": {content?, answer?, keywords?, enabled?}}`."""
    dataset = _dataset(session, caller, dataset_id)
    fields = segments.SegmentFields.parse(body.get("segment"), "segment", creating=False)
    changed = edit_segment(
        session, request, dataset, document_id, segment_id, fields, caller.account_id
    )
    return _segment_reply(dataset, documents.segment_views(session, [changed])[0])


def edit_segment(
    session: Session, request: Request, dataset: Dataset, document_id: str, segment_id: str,
    fields: segments.SegmentFields, account_id: str,
) -> DocumentSegment:  # fmt: skip
    """Change a segment (the Knowledge API's and the console's): checked, then the model runs
    outside any transaction, then the change is written in one."""
    document = segments.editable_document(session, dataset, document_id)
    found = segments.get_segment(session, document, segment_id)  # refused before the model runs
    segments.check_answers(document, [fields], creating=False)
    model = request.app.state.retriever.segment_model(session, dataset)
    plan = (
        segments.plan_children(session, document, model, [fields.content or found.content])
        if fields.regenerate_child_chunks
        else None
    )
    children = plan[0] if plan else None
    session.commit()  # nothing written yet: the model does not run inside a transaction
    parent = document.doc_form == documents.HIERARCHICAL_MODEL
    # A parent is not embedded, its children are.
    texts = (children or []) if parent else ([fields.content] if fields.content else [])
    vectors = segments.embed_texts(dataset, model, texts, children=parent)
    document = segments.editable_document(session, dataset, document_id)
    found = segments.get_segment(session, document, segment_id)
    return segments.update_segment(
        session, dataset, document, found, fields, model,
        account_id=account_id, vectors=vectors, children=children,
    )  # fmt: skip


@router.delete("/documents/{document_id}/segments/{segment_id}", status_code=204)
def delete_segment(
    dataset_id: str, document_id: str, segment_id: str, caller: DatasetCaller, session: DbSession
) -> Response:
    dataset = _dataset(session, caller, dataset_id)
    document = segments.editable_document(session, dataset, document_id)
    segments.delete_segment(session, document, segments.get_segment(session, document, segment_id))
    return Response(status_code=204)


# --- child chunks (Dify's parent-child documents) --------------------------------------------


def _parent(
    session: Session, dataset: Dataset, document_id: str, segment_id: str, *, editing: bool
) -> tuple[Document, DocumentSegment]:
    """A parent-child document's segment, the document editable (completed, enabled) for a
    change; a read of another document's segment finds no children (as Dify's does)."""
    if not editing:
        document = documents.get_document(session, dataset, document_id)
        return document, segments.get_segment(session, document, segment_id)
    document = segments.parent_document(segments.editable_document(session, dataset, document_id))
    return document, segments.get_segment(session, document, segment_id)


@router.get("/documents/{document_id}/segments/{segment_id}/child_chunks")
def list_child_chunks(
    dataset_id: str,
    document_id: str,
    segment_id: str,
    caller: DatasetCaller,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
) -> dict[str, Any]:
    """A page of a segment's child chunks, in order."""
    dataset = _dataset(session, caller, dataset_id)
    return child_chunk_page(session, dataset, document_id, segment_id, page, limit, keyword)


def child_chunk_page(
    session: Session, dataset: Dataset, document_id: str, segment_id: str,
    page: str | None, limit: str | None, keyword: str | None,
) -> dict[str, Any]:  # fmt: skip
    """A page of a segment's child chunks (the Knowledge API's and the console's)."""
    _, segment = _parent(session, dataset, document_id, segment_id, editing=False)
    page_number = int_query("page", page, default=1, low=1, high=1_000_000)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, total = segments.list_children(
        session, segment, page=page_number, limit=page_size, keyword=optional(keyword)
    )
    return {
        "data": [documents.child_view(chunk) for chunk in items],
        "total": total,
        "total_pages": -(-total // page_size),
        "page": page_number,
        "limit": page_size,
    }


@router.post("/documents/{document_id}/segments/{segment_id}/child_chunks")
def add_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, caller: DatasetCaller,
    session: DbSession, request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    """A child chunk written by hand, embedded and searchable on return."""
    dataset = _dataset(session, caller, dataset_id)
    made = new_child_chunk(
        session, request, dataset, document_id, segment_id, body, caller.account_id
    )
    return {"data": documents.child_view(made)}


def new_child_chunk(
    session: Session, request: Request, dataset: Dataset, document_id: str, segment_id: str,
    body: dict[str, Any], account_id: str,
) -> ChildChunk:  # fmt: skip
    """A child chunk added (the Knowledge API's and the console's): checked, embedded outside
    any transaction, written in one."""
    content = segments.parse_child_content(body)
    _parent(session, dataset, document_id, segment_id, editing=True)  # refused first
    model = request.app.state.retriever.segment_model(session, dataset)
    session.commit()  # nothing written yet: the model does not run inside a transaction
    vectors = segments.embed_texts(dataset, model, [content], children=True)
    _, segment = _parent(session, dataset, document_id, segment_id, editing=True)
    return segments.add_child(
        session, dataset, segment, content, model, account_id=account_id, vectors=vectors
    )


@router.patch("/documents/{document_id}/segments/{segment_id}/child_chunks/{child_chunk_id}")
def update_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, child_chunk_id: str,
    caller: DatasetCaller, session: DbSession, request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    """New text for a child chunk, embedded and re-indexed on return."""
    dataset = _dataset(session, caller, dataset_id)
    changed = edit_child_chunk(
        session, request, dataset, document_id, segment_id, child_chunk_id, body,
        caller.account_id,
    )  # fmt: skip
    return {"data": documents.child_view(changed)}


def edit_child_chunk(
    session: Session, request: Request, dataset: Dataset, document_id: str, segment_id: str,
    child_chunk_id: str, body: dict[str, Any], account_id: str,
) -> ChildChunk:  # fmt: skip
    """A child chunk's new text (the Knowledge API's and the console's), embedded outside any
    transaction."""
    content = segments.parse_child_content(body)
    _, segment = _parent(session, dataset, document_id, segment_id, editing=True)
    segments.get_child(session, segment, child_chunk_id)  # refused before the model runs
    model = request.app.state.retriever.segment_model(session, dataset)
    session.commit()
    vectors = segments.embed_texts(dataset, model, [content], children=True)
    _, segment = _parent(session, dataset, document_id, segment_id, editing=True)
    chunk = segments.get_child(session, segment, child_chunk_id)
    return segments.update_child(
        session, dataset, segment, chunk, content, model, account_id=account_id, vectors=vectors
    )


@router.delete(
    "/documents/{document_id}/segments/{segment_id}/child_chunks/{child_chunk_id}",
    status_code=204,
)
def delete_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, child_chunk_id: str,
    caller: DatasetCaller, session: DbSession,
) -> Response:  # fmt: skip
    dataset = _dataset(session, caller, dataset_id)
    remove_child_chunk(session, dataset, document_id, segment_id, child_chunk_id)
    return Response(status_code=204)


def remove_child_chunk(
    session: Session, dataset: Dataset, document_id: str, segment_id: str, child_chunk_id: str
) -> None:
    _, segment = _parent(session, dataset, document_id, segment_id, editing=True)
    segments.delete_child(session, segment, segments.get_child(session, segment, child_chunk_id))


@router.post("/retrieve")
@router.post("/hit-testing")
def retrieve(
    dataset_id: str, caller: DatasetCaller, session: DbSession, request: Request, body: JsonBody
) -> dict[str, Any]:
    """The dataset's segments nearest to `query` (Dify's retrieve, alias hit-testing)."""
    return hit_testing(session, _dataset(session, caller, dataset_id), request, body)


def hit_testing(
    session: Session, dataset: Dataset, request: Request, body: dict[str, Any]
) -> dict[str, Any]:
    query = retrieval.check_query(body.get("query"))
    if dataset.provider == external.EXTERNAL:
        # The dataset's service is asked (Dify's Service API searches an external dataset's
        # empty index instead); the request's `external_retrieval_model` over the dataset's.
        # Dify's SDK sends `retrieval_model` (`top_k`, the threshold) to either kind.
        given = body.get("external_retrieval_model")
        if given is None and isinstance(body.get("retrieval_model"), dict):
            given = {
                k: v for k, v in body["retrieval_model"].items() if k in external.DEFAULT_SETTING
            }
        setting = external.parse_setting(given, dataset.retrieval_model)
        retriever = request.app.state.retriever
        where = external.source(session, dataset, retriever.secret)
        session.commit()  # nothing written: no transaction waits on the service
        records = retriever.external.search(where, query, setting)
        return {
            "query": {"content": query},
            "records": [external.record_view(record) for record in records],
        }
    model = retrieval.retrieval_model(dataset, body.get("retrieval_model"))
    dataset_id = dataset.id
    # The search (its query's embedding, a rerank: model calls) reads in a session of its own:
    # the request's transaction, which on SQLite holds the write lock, ends first.
    session.commit()
    with request.app.state.resources.db.reads() as reading:
        searched = reading.get(Dataset, dataset_id)
        assert searched is not None
        found = request.app.state.retriever.search(reading, searched, query, model)
        return {
            "query": {"content": query},
            "records": [retrieval.record(hit) for hit in found],
        }


@router.get("/documents/{document_id}/download")
def download_link(
    dataset_id: str, document_id: str, caller: DatasetCaller, session: DbSession, links: Links
) -> dict[str, str]:
    """A signed, expiring link to the document's original file."""
    dataset = _dataset(session, caller, dataset_id)
    row = documents.document_file(session, documents.get_document(session, dataset, document_id))
    return {"url": links.document(row.id)}


@router.post("/documents/download-zip")
def download_zip(
    dataset_id: str, caller: DatasetCaller, session: DbSession, request: Request, body: JsonBody
) -> Response:
    """The documents' original files in one zip."""
    dataset = _dataset(session, caller, dataset_id)
    data = documents.zip_documents(
        session, request.app.state.storage, dataset, body.get("document_ids")
    )
    return Response(
        data,
        media_type="application/zip",
        headers={**FILE_HEADERS, "Content-Disposition": content_disposition(
            "attachment", f"{dataset.name}.zip")},
    )  # fmt: skip
