"""The app as its site's end users see it: `/api/parameters`, `/api/meta`, `/api/site`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduit.api.deps import AppSettings, DbSession
from conduit.api.files import Links
from conduit.api.web.deps import Caller
from conduit.services import app_parameters, sites, tools

router = APIRouter(tags=["web: app"])


@router.get("/parameters")
def parameters(caller: Caller, session: DbSession, settings: AppSettings) -> dict[str, Any]:
    return app_parameters.app_parameters(session, caller.app, upload=settings.upload)


@router.get("/meta")
def meta(caller: Caller) -> dict[str, Any]:
    """The icons of an agent app's tools."""
    return {"tool_icons": tools.tool_icons(caller.app)}


@router.get("/site")
def site(caller: Caller, session: DbSession, links: Links) -> dict[str, Any]:
    """Dify's `AppSiteInfo`: the app, the end user, the site; the model config only when the
    site makes its prompt public (`prompt_public`, off here: Conduit's sites keep it)."""
    app = caller.app
    icon = sites.icon_file_id(session, caller.site, tenant_id=app.tenant_id)
    view = sites.service_view(caller.site, icon_url=links.preview(icon) if icon else None)
    return {
        "app_id": app.id,
        "end_user_id": caller.end_user.id,
        "enable_site": app.enable_site,
        "site": {**view, "prompt_public": False},
        "model_config": None,
        "plan": "basic",
        "can_replace_logo": False,
        "custom_config": None,
    }
