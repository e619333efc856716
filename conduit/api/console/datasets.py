"""Datasets (knowledge bases) of the current workspace, for its members: the same use cases
as the Knowledge API's `/v1/datasets`, with the member's role and the datasets' `permission`
applied (an `only_me` dataset is its creator's alone; writes need an editor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile as FormFile

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.responses import page_body
from conduit.api.v1 import documents as v1_documents
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import Dataset, Membership, Role
from conduit.errors import InvalidParam, NoFileUploaded, NotFound, TooManyFiles
from conduit.services.apps import require_role
from conduit.services.datasets import datasets, documents, indexing
from conduit.services.datasets.datasets import DatasetFields
from conduit.services.datasets.documents import DocumentRequest
from conduit.services.datasets.segments import SegmentFields

router = APIRouter(prefix="/datasets", tags=["console: datasets"])
Text = Annotated[str | None, Query()]


def _include_all(raw: str | None) -> bool:
    if raw in (None, "", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise InvalidParam("include_all: must be true or false")


@router.get("")
def list_datasets(
    identity: CurrentIdentity,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    include_all: Text = None,
) -> dict[str, Any]:
    """`include_all` shows other members' `only_me` datasets to owners and admins."""
    member = identity.membership
    page_number = int_param("page", page, default=1, low=1, high=100_000)
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    items, total = datasets.list_datasets(
        session,
        member.tenant_id,
        account_id=member.account_id,
        page=page_number,
        limit=page_size,
        keyword=keyword or None,
        include_all=_include_all(include_all) and member.role.at_least(Role.ADMIN),
        tag_ids=[],
    )
    data = datasets.views(session, items)
    return page_body(data, page=page_number, limit=page_size, total=total)


@router.post("", status_code=201)
def create_dataset(identity: CurrentIdentity, session: DbSession, body: JsonBody) -> dict[str, Any]:
    member = identity.membership
    require_role(member, Role.EDITOR, "create datasets")
    dataset = datasets.create_dataset(
        session,
        tenant_id=member.tenant_id,
        account_id=member.account_id,
        fields=DatasetFields.parse(body, creating=True),
    )
    return {"data": datasets.view(session, dataset)}


@router.get("/{dataset_id}")
def get_dataset(dataset_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return {"data": datasets.view(session, dataset)}


@router.patch("/{dataset_id}")
def update_dataset(
    dataset_id: str, identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    member = identity.membership
    require_role(member, Role.EDITOR, "edit datasets")
    dataset = datasets.get_member_dataset(session, member, dataset_id)
    fields = DatasetFields.parse(body, creating=False)
    datasets.update_dataset(session, dataset, account_id=member.account_id, fields=fields)
    return {"data": datasets.view(session, dataset)}


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, identity: CurrentIdentity, session: DbSession) -> Response:
    member = identity.membership
    require_role(member, Role.EDITOR, "delete datasets")
    datasets.delete_dataset(session, datasets.get_member_dataset(session, member, dataset_id))
    return Response(status_code=204)


# --- documents: live status, pause, resume, retry ---------------------------------------------


@router.get("/{dataset_id}/batch/{batch}/indexing-status")
def batch_status(
    dataset_id: str, batch: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return {
        "data": [
            documents.indexing_status(d) for d in documents.batch_documents(session, dataset, batch)
        ]
    }


@router.patch("/{dataset_id}/documents/{document_id}/processing/{action}")
def pause_or_resume(
    dataset_id: str, document_id: str, action: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """Dify's console: pause an indexing document where it is, or resume it from there."""
    member = identity.membership
    require_role(member, Role.EDITOR, "pause or resume indexing")
    dataset = datasets.get_member_dataset(session, member, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    if action == "pause":
        indexing.pause_document(session, document, account_id=member.account_id)
    elif action == "resume":
        indexing.resume_document(session, document)
    else:
        raise NotFound("Not found.")
    return {"result": "success"}


@router.post("/{dataset_id}/retry", status_code=204)
def retry(
    dataset_id: str, identity: CurrentIdentity, session: DbSession, body: JsonBody
) -> Response:
    """Dify's console: index documents that ended in `error` again."""
    member = identity.membership
    require_role(member, Role.EDITOR, "retry indexing")
    dataset = datasets.get_member_dataset(session, member, dataset_id)
    ids = body.get("document_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidParam("document_ids is required: a list of document ids.")
    indexing.retry_documents(session, [documents.get_document(session, dataset, i) for i in ids])
    return Response(status_code=204)


@router.get("/{dataset_id}/documents")
def list_documents(
    dataset_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    status: Text = None,
) -> dict[str, Any]:
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return v1_documents.document_page(session, dataset, page, limit, keyword, status)


@dataclass(frozen=True)
class UploadedFiles:
    files: list[tuple[str, bytes, str | None]]  # (name, bytes, content type)
    settings: dict[str, Any]  # the JSON `data` part


async def read_files(request: Request) -> UploadedFiles:
    """`file` parts (up to CONDUIT_UPLOAD_BATCH_COUNT_LIMIT) and a JSON `data` part."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise NoFileUploaded()
    limit = request.app.state.settings.upload.batch_count_limit
    try:
        form = await request.form(max_files=limit + 1, max_fields=50)
    except Exception as error:  # malformed multipart bodies
        raise InvalidParam(f"The upload could not be read: {error}") from None
    parts = [v for k, v in form.multi_items() if k == "file" and isinstance(v, FormFile)]
    if not parts:
        raise NoFileUploaded()
    if len(parts) > limit:
        raise TooManyFiles(f"At most {limit} files per upload.")
    raw = form.get("data")
    try:
        settings = orjson.loads(raw) if isinstance(raw, str) and raw else {}
    except orjson.JSONDecodeError:
        raise InvalidParam("data must be a JSON object (a string in the form).") from None
    if not isinstance(settings, dict):
        raise InvalidParam("data must be a JSON object (a string in the form).")
    return UploadedFiles(
        [(p.filename or "", await p.read(), p.content_type) for p in parts], settings
    )


@router.post("/{dataset_id}/documents")
def upload_documents(
    dataset_id: str, identity: CurrentIdentity, session: DbSession, request: Request,
    upload: Annotated[UploadedFiles, Depends(read_files)],
) -> dict[str, Any]:  # fmt: skip
    """Several files in one request: one batch, all accepted or none (every file is checked
    before any is stored)."""
    member = identity.membership
    require_role(member, Role.EDITOR, "upload documents")
    dataset = datasets.get_member_dataset(session, member, dataset_id)
    limit_mb = request.app.state.settings.upload.file_size_limit_mb
    for name, data, _ in upload.files:
        documents.check_upload(name, len(data), limit_mb=limit_mb)
    parsed = DocumentRequest.parse(upload.settings)
    batch = documents.new_batch()
    made = [
        documents.create_document(
            session, request.app.state.storage, dataset, account_id=member.account_id,
            filename=name, data=data, mime_type=mime, request=parsed, limit_mb=limit_mb,
            created_from="web", batch=batch,
        )[0]
        for name, data, mime in upload.files
    ]  # fmt: skip
    return {"documents": documents.document_views(session, made), "batch": batch}


@router.get("/{dataset_id}/documents/{document_id}")
def get_document(
    dataset_id: str, document_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return documents.document_detail(session, documents.get_document(session, dataset, document_id))


@router.get("/{dataset_id}/documents/{document_id}/segments")
def list_segments(
    dataset_id: str,
    document_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    status: Text = None,
) -> dict[str, Any]:
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    document = documents.get_document(session, dataset, document_id)
    return v1_documents.segment_page(session, document, page, limit, keyword, status)


@router.patch("/{dataset_id}/documents/{document_id}/segments/{segment_id}")
def edit_segment(
    dataset_id: str, document_id: str, segment_id: str, identity: CurrentIdentity,
    session: DbSession, request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    """Dify's console segment edit: `{content?, answer?, keywords?}`."""
    member, dataset = _segment_editor(session, identity, dataset_id)
    fields = SegmentFields.parse(body, "body", creating=False)
    changed = v1_documents.edit_segment(
        session, request, dataset, document_id, segment_id, fields, member.account_id
    )
    return {"data": documents.segment_views(session, [changed])[0], "doc_form": dataset.doc_form}


def _segment_editor(
    session: DbSession, identity: CurrentIdentity, dataset_id: str
) -> tuple[Membership, Dataset]:
    """The caller, an editor, and the workspace's dataset whose segments they change."""
    member = identity.membership
    require_role(member, Role.EDITOR, "edit segments")
    return member, datasets.get_member_dataset(session, member, dataset_id)


# Dify's console child chunk routes (a parent-child document's): the Knowledge API's, for the
# workspace's members; changes by editors.
CHILDREN = "/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks"


@router.get(CHILDREN)
def list_child_chunks(
    dataset_id: str, document_id: str, segment_id: str, identity: CurrentIdentity,
    session: DbSession, page: Text = None, limit: Text = None, keyword: Text = None,
) -> dict[str, Any]:  # fmt: skip
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return v1_documents.child_chunk_page(
        session, dataset, document_id, segment_id, page, limit, keyword
    )


@router.post(CHILDREN)
def add_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, identity: CurrentIdentity,
    session: DbSession, request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    member, dataset = _segment_editor(session, identity, dataset_id)
    made = v1_documents.new_child_chunk(
        session, request, dataset, document_id, segment_id, body, member.account_id
    )
    return {"data": documents.child_view(made)}


@router.patch(CHILDREN + "/{child_chunk_id}")
def edit_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, child_chunk_id: str,
    identity: CurrentIdentity, session: DbSession, request: Request, body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    member, dataset = _segment_editor(session, identity, dataset_id)
    changed = v1_documents.edit_child_chunk(
        session, request, dataset, document_id, segment_id, child_chunk_id, body,
        member.account_id,
    )  # fmt: skip
    return {"data": documents.child_view(changed)}


@router.delete(CHILDREN + "/{child_chunk_id}", status_code=204)
def delete_child_chunk(
    dataset_id: str, document_id: str, segment_id: str, child_chunk_id: str,
    identity: CurrentIdentity, session: DbSession,
) -> Response:  # fmt: skip
    _, dataset = _segment_editor(session, identity, dataset_id)
    v1_documents.remove_child_chunk(session, dataset, document_id, segment_id, child_chunk_id)
    return Response(status_code=204)


@router.patch("/{dataset_id}/documents/{document_id}/segment/{action}")
def switch_segments(
    dataset_id: str, document_id: str, action: str, identity: CurrentIdentity,
    session: DbSession, request: Request, segment_id: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:  # fmt: skip
    """Dify's console: `enable` or `disable` segments (`?segment_id=…`, repeated)."""
    if action not in ("enable", "disable"):
        raise NotFound("Not found.")
    if not segment_id:
        raise InvalidParam("segment_id is required.")
    member = identity.membership
    require_role(member, Role.EDITOR, "enable or disable segments")
    dataset = datasets.get_member_dataset(session, member, dataset_id)
    fields = SegmentFields(enabled=action == "enable")
    for one in segment_id:
        v1_documents.edit_segment(
            session, request, dataset, document_id, one, fields, member.account_id
        )
    return {"result": "success"}


@router.post("/{dataset_id}/hit-testing")
def hit_testing(
    dataset_id: str, identity: CurrentIdentity, session: DbSession, request: Request,
    body: JsonBody,
) -> dict[str, Any]:  # fmt: skip
    dataset = datasets.get_member_dataset(session, identity.membership, dataset_id)
    return v1_documents.hit_testing(session, dataset, request, body)
