"""Datasets (knowledge bases) of the current workspace, for its members: the same use cases
as the Knowledge API's `/v1/datasets`, with the member's role and the datasets' `permission`
applied (an `only_me` dataset is its creator's alone; writes need an editor)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from conduit.api.console.apps import int_param
from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import Role
from conduit.errors import InvalidParam, NotFound
from conduit.services.apps import require_role
from conduit.services.datasets import datasets, documents, indexing
from conduit.services.datasets.datasets import DatasetFields

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
    return {
        "data": datasets.views(session, items),
        "total": total,
        "page": page_number,
        "limit": page_size,
        "has_more": page_number * page_size < total,
    }


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
