"""The Knowledge API's dataset tags (`/v1/datasets/tags…`, `/v1/datasets/{id}/tags`), called
with a dataset key. Registered before the dataset routes: `tags` is not a dataset id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from conduit.api.deps import DatasetCaller, DbSession
from conduit.api.v1.schemas import JsonBody
from conduit.services.datasets import datasets, tags

router = APIRouter(tags=["knowledge: tags"])


@router.post("/datasets/tags")
def create_tag(caller: DatasetCaller, session: DbSession, body: JsonBody) -> dict[str, Any]:
    return tags.tag_view(
        tags.create_tag(session, caller.tenant_id, caller.account_id, body.get("name"))
    )


@router.get("/datasets/tags")
def list_tags(caller: DatasetCaller, session: DbSession) -> list[dict[str, Any]]:
    return tags.list_tags(session, caller.tenant_id)


@router.patch("/datasets/tags")
def rename_tag(caller: DatasetCaller, session: DbSession, body: JsonBody) -> dict[str, Any]:
    tag = tags.rename_tag(session, caller.tenant_id, body.get("tag_id"), body.get("name"))
    (view,) = [t for t in tags.list_tags(session, caller.tenant_id) if t["id"] == tag.id]
    return view


@router.delete("/datasets/tags", status_code=204)
def delete_tag(caller: DatasetCaller, session: DbSession, body: JsonBody) -> Response:
    tags.delete_tag(session, caller.tenant_id, body.get("tag_id"))
    return Response(status_code=204)


@router.post("/datasets/tags/binding", status_code=204)
def bind(caller: DatasetCaller, session: DbSession, body: JsonBody) -> Response:
    tags.bind(
        session, caller.tenant_id, caller.account_id, body.get("tag_ids"), body.get("target_id")
    )
    return Response(status_code=204)


@router.post("/datasets/tags/unbinding", status_code=204)
def unbind(caller: DatasetCaller, session: DbSession, body: JsonBody) -> Response:
    tag_ids = body.get("tag_ids") if body.get("tag_ids") is not None else body.get("tag_id")
    tags.unbind(session, caller.tenant_id, tag_ids, body.get("target_id"))
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/tags")
def dataset_tags(dataset_id: str, caller: DatasetCaller, session: DbSession) -> dict[str, Any]:
    dataset = datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)
    found = [
        {"id": t["id"], "name": t["name"]}
        for t in datasets.dataset_tags(session, [dataset.id])[dataset.id]
    ]
    return {"data": found, "total": len(found)}
