"""The Knowledge API's document metadata (`/v1/datasets/{dataset_id}/metadata…` and
`…/documents/metadata`), called with a dataset key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from conduit.api.deps import DatasetCaller, DbSession
from conduit.api.v1.schemas import JsonBody
from conduit.db.models import Dataset, DatasetMetadata
from conduit.services.datasets import datasets, metadata

router = APIRouter(prefix="/datasets/{dataset_id}", tags=["knowledge: metadata"])


def _dataset(session: DbSession, caller: DatasetCaller, dataset_id: str) -> Dataset:
    return datasets.get_dataset(session, caller.tenant_id, dataset_id, api=True)


def _view(field: DatasetMetadata) -> dict[str, Any]:
    return {"id": field.id, "name": field.name, "type": field.type}


@router.post("/metadata", status_code=201)
def create_field(
    dataset_id: str, caller: DatasetCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    return _view(metadata.create_field(session, dataset, caller.account_id, body))


@router.get("/metadata")
def list_fields(dataset_id: str, caller: DatasetCaller, session: DbSession) -> dict[str, Any]:
    return metadata.listing(session, _dataset(session, caller, dataset_id))


@router.get("/metadata/built-in")
def built_in_fields(dataset_id: str, caller: DatasetCaller, session: DbSession) -> dict[str, Any]:
    _dataset(session, caller, dataset_id)
    return metadata.built_in_fields()


@router.post("/metadata/built-in/{action}")
def switch_built_in(
    dataset_id: str, action: str, caller: DatasetCaller, session: DbSession
) -> dict[str, Any]:
    metadata.set_built_in(_dataset(session, caller, dataset_id), action)
    return {"result": "success"}


@router.patch("/metadata/{metadata_id}")
def rename_field(
    dataset_id: str, metadata_id: str, caller: DatasetCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    dataset = _dataset(session, caller, dataset_id)
    return _view(metadata.rename_field(session, dataset, metadata_id, body.get("name")))


@router.delete("/metadata/{metadata_id}", status_code=204)
def delete_field(
    dataset_id: str, metadata_id: str, caller: DatasetCaller, session: DbSession
) -> Response:
    metadata.delete_field(session, _dataset(session, caller, dataset_id), metadata_id)
    return Response(status_code=204)


@router.post("/documents/metadata")
def update_documents(
    dataset_id: str, caller: DatasetCaller, session: DbSession, body: JsonBody
) -> dict[str, Any]:
    metadata.update_documents(session, _dataset(session, caller, dataset_id), body)
    return {"result": "success"}
