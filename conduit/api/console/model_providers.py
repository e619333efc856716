"""The workspace's model providers (`/workspaces/current/model-providers`): API keys go in,
only masked keys come out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, StrictInt, StringConstraints

from conduit.api.console.schemas import Body
from conduit.api.deps import CurrentIdentity, DbSession, ServerSecret, get_settings
from conduit.api.runs import runs_of
from conduit.services import model_providers
from conduit.services.model_providers import KEEP, MAX_QUOTA, ProviderFields

router = APIRouter(prefix="/workspaces/current/model-providers", tags=["console: model providers"])

Text = Annotated[str, StringConstraints(max_length=4096)]
# Tokens the provider may serve (null: unlimited). Strict: true or "5" is no token count.
QuotaLimit = Annotated[StrictInt, Field(ge=0, le=MAX_QUOTA)] | None


class ProviderCreateBody(Body):
    provider: Annotated[str, StringConstraints(max_length=64)] = "openai_api_compatible"
    name: Annotated[str, StringConstraints(max_length=255)]
    base_url: Text
    api_key: Text | None = None
    models: Annotated[
        list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)
    ] = []
    embedding_models: Annotated[
        list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)
    ] = Field([], description="Models it serves at POST {base_url}/embeddings (for datasets).")
    rerank_models: Annotated[
        list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)
    ] = Field([], description="Models it serves at POST {base_url}/rerank (for searches).")
    is_default: bool = False
    quota_limit: QuotaLimit = None


class ProviderUpdateBody(Body):
    provider: Annotated[str, StringConstraints(max_length=64)] | None = None
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    base_url: Text | None = None
    api_key: Text | None = Field(
        None, description='New key; omit it (or send "[__HIDDEN__]") to keep the stored one.'
    )
    models: (
        Annotated[list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)]
        | None
    ) = None
    embedding_models: (
        Annotated[list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)]
        | None
    ) = None
    rerank_models: (
        Annotated[list[Annotated[str, StringConstraints(max_length=255)]], Field(max_length=100)]
        | None
    ) = None
    is_default: bool | None = None
    quota_limit: QuotaLimit = Field(None, description="null: unlimited; omit it to keep it.")
    quota_used: StrictInt | None = Field(None, description="0 resets the usage count.")


class ProviderTestBody(Body):
    model: Annotated[str, StringConstraints(max_length=255)] | None = None


Secret = ServerSecret


@router.get("")
def list_providers(identity: CurrentIdentity, session: DbSession, secret: Secret) -> dict[str, Any]:
    rows = model_providers.list_providers(session, member=identity.membership)
    return {"data": [model_providers.snapshot(row, secret) for row in rows], "total": len(rows)}


@router.post("", status_code=201)
def create_provider(
    body: ProviderCreateBody, identity: CurrentIdentity, session: DbSession, secret: Secret
) -> dict[str, Any]:
    row = model_providers.create_provider(
        session,
        member=identity.membership,
        fields=ProviderFields(
            provider=body.provider,
            name=body.name,
            base_url=body.base_url,
            api_key=body.api_key,
            models=list(body.models),
            embedding_models=list(body.embedding_models),
            rerank_models=list(body.rerank_models),
            is_default=body.is_default,
            quota_limit=body.quota_limit,
        ),
        secret=secret,
    )
    return {"data": model_providers.snapshot(row, secret)}


@router.get("/{provider_id}")
def get_provider(
    provider_id: str, identity: CurrentIdentity, session: DbSession, secret: Secret
) -> dict[str, Any]:
    row = model_providers.get_provider(session, identity.membership.tenant_id, provider_id)
    return {"data": model_providers.snapshot(row, secret)}


@router.put("/{provider_id}")
def update_provider(
    provider_id: str,
    body: ProviderUpdateBody,
    identity: CurrentIdentity,
    session: DbSession,
    secret: Secret,
) -> dict[str, Any]:
    row = model_providers.update_provider(
        session,
        member=identity.membership,
        provider_id=provider_id,
        fields=ProviderFields(
            provider=body.provider,
            name=body.name,
            base_url=body.base_url,
            api_key=body.api_key,
            models=list(body.models) if body.models is not None else None,
            embedding_models=(
                list(body.embedding_models) if body.embedding_models is not None else None
            ),
            rerank_models=list(body.rerank_models) if body.rerank_models is not None else None,
            is_default=body.is_default,
            quota_limit=body.quota_limit if "quota_limit" in body.model_fields_set else KEEP,
            quota_used=body.quota_used,
        ),
        secret=secret,
    )
    return {"data": model_providers.snapshot(row, secret)}


@router.delete("/{provider_id}", status_code=204)
def delete_provider(provider_id: str, identity: CurrentIdentity, session: DbSession) -> Response:
    model_providers.delete_provider(session, member=identity.membership, provider_id=provider_id)
    return Response(status_code=204)


def _probe_target(
    provider_id: str,
    request: Request,
    identity: CurrentIdentity,
    session: DbSession,
    body: ProviderTestBody | None = None,
) -> tuple[dict[str, Any], str]:
    ref, model = model_providers.probe_target(
        session,
        member=identity.membership,
        provider_id=provider_id,
        model=body.model if body else None,
        default_model=get_settings(request).model.name,
    )
    # End the read transaction before the model call: on SQLite every transaction holds the
    # write lock, and the registry reads the credentials in a session of its own.
    session.commit()
    return ref, model


@router.post("/{provider_id}/test")
async def test_provider(
    request: Request, target: Annotated[tuple[dict[str, Any], str], Depends(_probe_target)]
) -> dict[str, Any]:
    """A one-token call through the model registry: `{"result": "success"}`, or the model
    error (e.g. 400 `provider_not_initialize` for a refused key)."""
    ref, model = target
    await model_providers.check_model(runs_of(request).models.resolve, ref, model)
    return {"result": "success"}
