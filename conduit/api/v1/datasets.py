"""The Knowledge API's datasets (`/v1/datasets`), called with a dataset key (`dataset-…`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from conduit.api.deps import AppSettings, DatasetCaller, DbSession
from conduit.api.responses import page_body
from conduit.api.v1.schemas import JsonBody, int_query, optional
from conduit.errors import InvalidParam
from conduit.services.datasets import datasets, models
from conduit.services.datasets.datasets import DatasetFields

router = APIRouter(tags=["knowledge: datasets"])
Text = Annotated[str | None, Query()]


def _flag(name: str, raw: str | None) -> bool:
    value = optional(raw)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidParam(f"{name} must be true or false")


@router.post("/datasets")
def create_dataset(caller: DatasetCaller, session: DbSession, body: JsonBody) -> dict[str, Any]:
    fields = DatasetFields.parse(body, creating=True)
    dataset = datasets.create_dataset(
        session, tenant_id=caller.tenant_id, account_id=caller.account_id, fields=fields
    )
    return datasets.view(session, dataset)


@router.get("/datasets")
def list_datasets(
    caller: DatasetCaller,
    session: DbSession,
    page: Text = None,
    limit: Text = None,
    keyword: Text = None,
    include_all: Text = None,
    tag_ids: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    page_number = int_query("page", page, default=1, low=1, high=1_000_000)
    page_size = int_query("limit", limit, default=20, low=1, high=100)
    items, total = datasets.list_datasets(
        session,
        caller.tenant_id,
        account_id=caller.account_id,
        page=page_number,
        limit=page_size,
        keyword=optional(keyword),
        include_all=_flag("include_all", include_all),
        tag_ids=[t for t in tag_ids or [] if t],
    )
    return page_body(datasets.views(session, items), page=page_number, limit=page_size, total=total)


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, caller: DatasetCaller, session: DbSession) -> dict[str, Any]:
    dataset = datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)
    return datasets.view(session, dataset)


@router.patch("/datasets/{dataset_id}")
def update_dataset(
    dataset_id: str, caller: DatasetCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    dataset = datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)
    fields = DatasetFields.parse(body, creating=False)
    datasets.update_dataset(session, dataset, account_id=caller.account_id, fields=fields)
    return datasets.view(session, dataset)


@router.delete("/datasets/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: str, caller: DatasetCaller, session: DbSession) -> Response:
    dataset = datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)
    datasets.delete_dataset(session, dataset)
    return Response(status_code=204)


@router.get("/workspaces/current/models/model-types/{model_type}")
def workspace_models(
    model_type: str, caller: DatasetCaller, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """The workspace's models of one type (Dify's shape: providers, each with its models)."""
    return {"data": models.available_models(session, caller.tenant_id, model_type, settings)}
