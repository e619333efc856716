"""Apps in the current workspace."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, StrictBool
from sqlalchemy.orm import Session

from conduit.api.console.schemas import AppCopyBody, AppCreateBody, AppNameBody, AppUpdateBody
from conduit.api.deps import AppCache, CurrentIdentity, DbSession, ServerSecret
from conduit.api.responses import page_body
from conduit.db.models import AppMode, Membership, Role
from conduit.errors import InvalidParam
from conduit.services import apps
from conduit.services.apps import AppFields, require_role
from conduit.services.model_config import CONFIG_MODES, validate_model_config

router = APIRouter(prefix="/apps", tags=["console: apps"])


def _empty_as_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


@router.get("")
def list_apps(
    identity: CurrentIdentity,
    session: DbSession,
    page: Annotated[str | None, Query(description="Page number, from 1.")] = None,
    limit: Annotated[str | None, Query(description="Items per page, 1–100.")] = None,
    mode: Annotated[
        str | None,
        Query(description="chat, completion, agent-chat, workflow, advanced-chat or all."),
    ] = None,
    name: Annotated[str | None, Query(description="Part of the app name.")] = None,
) -> dict[str, Any]:
    page_number = int_param("page", page, default=1, low=1, high=100_000)
    page_size = int_param("limit", limit, default=20, low=1, high=100)
    mode_filter: AppMode | None = None
    if mode and mode != "all":
        try:
            mode_filter = AppMode(mode)
        except ValueError:
            allowed = ", ".join(m.value for m in AppMode)
            raise InvalidParam(f"mode: must be one of all, {allowed}") from None
    items, total = apps.list_apps(
        session,
        identity.membership.tenant_id,
        page=page_number,
        limit=page_size,
        mode=mode_filter,
        name=_empty_as_none(name),
    )
    data = [apps.snapshot(app) for app in items]
    return page_body(data, page=page_number, limit=page_size, total=total)


def int_param(name: str, raw: str | None, *, default: int, low: int, high: int) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise InvalidParam(f"{name}: must be an integer") from None
    if not low <= value <= high:
        raise InvalidParam(f"{name}: must be between {low} and {high}")
    return value


def _checked_config(
    session: Session, member: Membership, config: Any, mode: AppMode | None
) -> dict[str, Any] | None:
    """A model config sent with the app, checked as the model-config route checks it (400
    naming the field) for the modes that have one; after the role's check (403 first)."""
    if config is None:
        return None
    require_role(member, Role.EDITOR, "edit apps")
    if mode not in CONFIG_MODES:
        return dict(config)
    return validate_model_config(session, member.tenant_id, config)


@router.post("", status_code=201)
def create_app(
    body: AppCreateBody, identity: CurrentIdentity, session: DbSession, secret: ServerSecret
) -> dict[str, Any]:
    fields = AppFields(
        name=body.name,
        description=body.description,
        mode=body.mode,
        icon_type=body.icon_type,
        icon=body.icon,
        icon_background=body.icon_background,
        model_config=_checked_config(
            session, identity.membership, body.app_model_config, AppMode(body.mode)
        ),
    )
    app = apps.create_app(session, member=identity.membership, fields=fields, server_secret=secret)
    return {"data": apps.snapshot(app)}


@router.get("/{app_id}")
def get_app(
    app_id: str, identity: CurrentIdentity, session: DbSession, cache: AppCache
) -> dict[str, Any]:
    return {"data": apps.get_app_snapshot(session, cache, identity.membership.tenant_id, app_id)}


@router.put("/{app_id}")
def update_app(
    app_id: str, body: AppUpdateBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    fields = AppFields(
        name=body.name,
        description=body.description,
        icon_type=body.icon_type,
        icon=body.icon,
        icon_background=body.icon_background,
        enable_site=body.enable_site,
        enable_api=body.enable_api,
        max_active_requests=body.max_active_requests,
        model_config=_checked_config(
            session,
            identity.membership,
            body.app_model_config,
            apps.get_app(session, identity.membership.tenant_id, app_id).mode
            if body.app_model_config is not None
            else None,
        ),
    )
    app = apps.update_app(session, member=identity.membership, app_id=app_id, fields=fields)
    return {"data": apps.snapshot(app)}


@router.patch("/{app_id}/name")
def rename_app(
    app_id: str, body: AppNameBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    app = apps.update_app(
        session, member=identity.membership, app_id=app_id, fields=AppFields(name=body.name)
    )
    return {"data": apps.snapshot(app)}


class SiteEnableBody(BaseModel):
    enable_site: StrictBool


class ApiEnableBody(BaseModel):
    enable_api: StrictBool


@router.post("/{app_id}/site-enable")
def enable_site(
    app_id: str, body: SiteEnableBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """Turn the app's site (its web app and the `/api` tier) on or off."""
    fields = AppFields(enable_site=body.enable_site)
    app = apps.update_app(session, member=identity.membership, app_id=app_id, fields=fields)
    return {"data": apps.snapshot(app)}


@router.post("/{app_id}/api-enable")
def enable_api(
    app_id: str, body: ApiEnableBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    """Turn the app's Service API (`/v1`) on or off."""
    fields = AppFields(enable_api=body.enable_api)
    app = apps.update_app(session, member=identity.membership, app_id=app_id, fields=fields)
    return {"data": apps.snapshot(app)}


@router.post("/{app_id}/copy", status_code=201)
def copy_app(
    app_id: str,
    identity: CurrentIdentity,
    session: DbSession,
    secret: ServerSecret,
    body: AppCopyBody | None = None,
) -> dict[str, Any]:
    body = body or AppCopyBody()
    fields = AppFields(
        name=body.name,
        description=body.description,
        icon_type=body.icon_type,
        icon=body.icon,
        icon_background=body.icon_background,
    )
    app = apps.copy_app(
        session, member=identity.membership, app_id=app_id, fields=fields, server_secret=secret
    )
    return {"data": apps.snapshot(app)}


@router.delete("/{app_id}", status_code=204)
def delete_app(app_id: str, identity: CurrentIdentity, session: DbSession) -> Response:
    apps.delete_app(session, member=identity.membership, app_id=app_id)
    return Response(status_code=204)
