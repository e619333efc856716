"""Workflow and chatflow apps in the console: the draft, publishing, versions; and every app
as Dify's DSL (import, confirm a pending import, export). Shapes are Dify's console ones."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from conduit.api.console.apps import int_param
from conduit.api.console.schemas import Body
from conduit.api.deps import AppCache, AppSettings, CurrentIdentity, DbSession, ServerSecret
from conduit.api.responses import OrjsonResponse
from conduit.infra.settings import Settings
from conduit.infra.ssrf import AllowList
from conduit.services import app_dsl, workflows
from conduit.services.app_dsl import ImportContext, ImportRequest, ImportResult

router = APIRouter(prefix="/apps", tags=["console: workflows and DSL"])


class SyncDraftBody(Body):
    graph: dict[str, Any]
    features: dict[str, Any]
    hash: str | None = None
    environment_variables: list[Any] = Field(default_factory=list)
    conversation_variables: list[Any] = Field(default_factory=list)


class PublishBody(Body):
    marked_name: Annotated[str, Field(max_length=20)] | None = None
    marked_comment: Annotated[str, Field(max_length=100)] | None = None


class ImportBody(Body):
    mode: Literal["yaml-content", "yaml-url"]
    yaml_content: str | None = None
    yaml_url: str | None = None
    name: str | None = None
    description: str | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None
    app_id: str | None = None


def server_provider(settings: Settings) -> str:
    """What serves a model on the default provider when the workspace has none."""
    return "openai_api_compatible" if settings.model.base_url else "local"


def import_context(settings: Settings, secret: str) -> ImportContext:
    return ImportContext(
        server_secret=secret,
        server_provider=server_provider(settings),
        allow=AllowList.of(settings.webhook),
    )


def import_response(result: ImportResult) -> OrjsonResponse:
    return OrjsonResponse(result.to_dict(), status_code=result.http_status)


# --- draft, publish, versions ---------------------------------------------------------------


@router.get("/{app_id}/workflows/draft")
def get_draft(
    app_id: str, identity: CurrentIdentity, session: DbSession, secret: ServerSecret
) -> dict[str, Any]:
    draft = workflows.get_draft(session, member=identity.membership, app_id=app_id)
    return workflows.snapshot(session, draft, server_secret=secret)


@router.post("/{app_id}/workflows/draft")
def sync_draft(
    app_id: str,
    body: SyncDraftBody,
    identity: CurrentIdentity,
    session: DbSession,
    secret: ServerSecret,
    settings: AppSettings,
) -> dict[str, Any]:
    """Replace the draft; a `hash` that is not the draft's current one is a 409."""
    draft, content = workflows.sync_draft(
        session,
        member=identity.membership,
        app_id=app_id,
        raw=body.model_dump(),
        unique_hash=body.hash,
        server_secret=secret,
        server_provider=server_provider(settings),
    )
    return {
        "result": "success",
        "hash": workflows.workflow_hash(draft),
        "updated_at": int(draft.updated_at.timestamp()),
        "warnings": content.warnings,
        "provider_mappings": content.provider_mappings,
    }


@router.post("/{app_id}/workflows/publish")
def publish(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    body: PublishBody | None = None,
) -> dict[str, Any]:
    body = body or PublishBody()
    published = workflows.publish(
        session,
        member=identity.membership,
        app_id=app_id,
        marked_name=body.marked_name or "",
        marked_comment=body.marked_comment or "",
    )
    return {"result": "success", "created_at": int(published.created_at.timestamp())}


@router.get("/{app_id}/workflows/publish")
def get_published(
    app_id: str, identity: CurrentIdentity, session: DbSession, secret: ServerSecret
) -> dict[str, Any]:
    published = workflows.get_published(session, member=identity.membership, app_id=app_id)
    return workflows.snapshot(session, published, server_secret=secret)


@router.get("/{app_id}/workflows")
def list_versions(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    secret: ServerSecret,
    page: Annotated[str | None, Query(description="Page number, from 1.")] = None,
    limit: Annotated[str | None, Query(description="Versions per page, 1–100.")] = None,
    user_id: Annotated[str | None, Query(description="Only versions you published.")] = None,
    named_only: Annotated[bool, Query(description="Only versions with a name.")] = False,
) -> dict[str, Any]:
    """The draft first, then the published versions, newest first (empty before the first
    publish, as Dify)."""
    page_number = int_param("page", page, default=1, low=1, high=99_999)
    page_size = int_param("limit", limit, default=10, low=1, high=100)
    items, has_more = workflows.list_versions(
        session,
        member=identity.membership,
        app_id=app_id,
        page=page_number,
        limit=page_size,
        user_id=user_id or None,
        named_only=named_only,
    )
    return {
        "items": [workflows.snapshot(session, item, server_secret=secret) for item in items],
        "page": page_number,
        "limit": page_size,
        "has_more": has_more,
    }


# --- DSL ------------------------------------------------------------------------------------


@router.post("/imports")
def import_app(
    body: ImportBody,
    identity: CurrentIdentity,
    session: DbSession,
    cache: AppCache,
    secret: ServerSecret,
    settings: AppSettings,
) -> OrjsonResponse:
    """Dify's import: 200 completed (with warnings), 202 pending (confirm it), 400 failed."""
    result = app_dsl.import_app(
        session,
        cache,
        member=identity.membership,
        request=ImportRequest(**body.model_dump()),
        context=import_context(settings, secret),
    )
    return import_response(result)


@router.post("/imports/{import_id}/confirm")
def confirm_import(
    import_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    cache: AppCache,
    secret: ServerSecret,
    settings: AppSettings,
) -> OrjsonResponse:
    result = app_dsl.confirm_import(
        session,
        cache,
        member=identity.membership,
        import_id=import_id,
        context=import_context(settings, secret),
    )
    return import_response(result)


@router.get("/imports/{app_id}/check-dependencies")
def check_dependencies(
    app_id: str, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    leaked = app_dsl.check_dependencies(session, member=identity.membership, app_id=app_id)
    return {"leaked_dependencies": leaked}


@router.get("/{app_id}/export")
def export_app(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    secret: ServerSecret,
    include_secret: Annotated[bool, Query(description="Secret variables' values too.")] = False,
    workflow_id: Annotated[str | None, Query(description="A version; the draft if unset.")] = None,
) -> dict[str, Any]:
    data = app_dsl.export_app(
        session,
        member=identity.membership,
        app_id=app_id,
        include_secret=include_secret,
        workflow_id=workflow_id or None,
        server_secret=secret,
    )
    return {"data": data}
