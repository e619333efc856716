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
from conduit.errors import InvalidParam
from conduit.services.apps import require_role
from conduit.services.datasets import datasets
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
