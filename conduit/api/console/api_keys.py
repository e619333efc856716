"""Service API keys: per app (`app-…`) and per workspace for knowledge (`dataset-…`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from conduit.api.deps import AppCache, CurrentIdentity, DbSession
from conduit.db.models import ApiTokenType
from conduit.services import api_keys

router = APIRouter(tags=["console: API keys"])


def _created(new: api_keys.NewKey) -> dict[str, Any]:
    shown = api_keys.display(new.key)
    shown["token"] = new.token  # the only time the full token is returned
    return {"data": shown}


@router.get("/apps/{app_id}/api-keys")
def list_app_keys(app_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    keys = api_keys.list_keys(
        session, member=identity.membership, kind=ApiTokenType.APP, app_id=app_id
    )
    return {"data": [api_keys.display(k) for k in keys], "total": len(keys)}


@router.post("/apps/{app_id}/api-keys", status_code=201)
def create_app_key(app_id: str, identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    return _created(
        api_keys.create_key(
            session, member=identity.membership, kind=ApiTokenType.APP, app_id=app_id
        )
    )


@router.delete("/apps/{app_id}/api-keys/{key_id}", status_code=204)
def delete_app_key(
    app_id: str, key_id: str, identity: CurrentIdentity, session: DbSession, cache: AppCache
) -> Response:
    api_keys.delete_key(
        session,
        member=identity.membership,
        kind=ApiTokenType.APP,
        key_id=key_id,
        cache=cache,
        app_id=app_id,
    )
    return Response(status_code=204)


@router.get("/datasets/api-keys")
def list_dataset_keys(identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    keys = api_keys.list_keys(session, member=identity.membership, kind=ApiTokenType.DATASET)
    return {"data": [api_keys.display(k) for k in keys], "total": len(keys)}


@router.post("/datasets/api-keys", status_code=201)
def create_dataset_key(identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    return _created(
        api_keys.create_key(session, member=identity.membership, kind=ApiTokenType.DATASET)
    )


@router.delete("/datasets/api-keys/{key_id}", status_code=204)
def delete_dataset_key(
    key_id: str, identity: CurrentIdentity, session: DbSession, cache: AppCache
) -> Response:
    api_keys.delete_key(
        session, member=identity.membership, kind=ApiTokenType.DATASET, key_id=key_id, cache=cache
    )
    return Response(status_code=204)
