"""App metadata: GET /v1/ (no auth), /info, /parameters, /meta, /site."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import conduit
from conduit.api.deps import AppCaller, AppSettings, DbSession
from conduit.api.files import Links
from conduit.errors import Forbidden
from conduit.services import app_parameters, apps, end_users, sites, tools

router = APIRouter(tags=["service: app"])


@router.get("/")
async def welcome() -> dict[str, Any]:
    return {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": conduit.__version__}


@router.get("/info")
def info(caller: AppCaller, session: DbSession) -> dict[str, Any]:
    app = caller.app
    return {
        "name": app.name,
        "description": app.description,
        "tags": [],  # apps have no tags here
        "mode": app.mode.value,
        "author_name": apps.author_name(session, app),
    }


@router.get("/end-users/{end_user_id}")
def end_user(end_user_id: str, caller: AppCaller, session: DbSession) -> dict[str, Any]:
    """One of the app's end users by id (as messages and feedbacks name them)."""
    return end_users.end_user_view(session, caller.app, end_user_id)


@router.get("/parameters")
def parameters(caller: AppCaller, session: DbSession, settings: AppSettings) -> dict[str, Any]:
    """The app's features and input form (a workflow app's from its published workflow)."""
    return app_parameters.app_parameters(session, caller.app, upload=settings.upload)


@router.get("/meta")
def meta(caller: AppCaller) -> dict[str, Any]:
    """The icons of an agent app's tools."""
    return {"tool_icons": tools.tool_icons(caller.app)}


@router.get("/site")
def site(caller: AppCaller, session: DbSession, links: Links) -> dict[str, Any]:
    found = sites.site_of(session, caller.app)
    if found is None or not caller.app.enable_site:
        raise Forbidden("Site is not enabled for this app.")
    icon = sites.icon_file_id(session, found, tenant_id=caller.app.tenant_id)
    return sites.service_view(found, icon_url=links.preview(icon) if icon else None)
