"""`GET /api/passport`, and what the web app asks before it has one: system features and the
access mode (no passport needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from conduit.api.deps import DbSession
from conduit.api.web.deps import APP_CODE_HEADER, passport_policy
from conduit.services import web_passport

router = APIRouter(tags=["web: passport"])


@router.get("/passport")
def passport(request: Request, session: DbSession) -> dict[str, Any]:
    """A passport for the site `X-App-Code`: a new end user, or (a returning browser sending
    its passport as `Authorization: Bearer`) the same one again."""
    header = request.headers.get("authorization") or ""
    scheme, _, old = header.strip().partition(" ")
    token = web_passport.issue_passport(
        session,
        passport_policy(request),
        app_code=request.headers.get(APP_CODE_HEADER),
        old_token=old.strip() if scheme.lower() == "bearer" else None,
    )
    return {"access_token": token}


@router.get("/system-features")
def system_features() -> dict[str, Any]:
    """Dify's system features as a self-hosted server without SSO or web app auth has them."""
    return {
        "sso_enforced_for_signin": False,
        "sso_enforced_for_signin_protocol": "",
        "sso_enforced_for_web": False,
        "sso_enforced_for_web_protocol": "",
        "enable_web_sso_switch_component": False,
        "enable_marketplace": False,
        "enable_email_code_login": False,
        "enable_email_password_login": True,
        "enable_social_oauth_login": False,
        "is_allow_register": False,
        "is_allow_create_workspace": False,
        "is_email_setup": False,
        "license": {"status": "none", "expired_at": ""},
        "branding": {
            "enabled": False,
            "application_title": "",
            "login_page_logo": "",
            "workspace_logo": "",
            "favicon": "",
        },
        "webapp_auth": {
            "enabled": False,
            "allow_sso": False,
            "sso_config": {"protocol": ""},
            "allow_email_code_login": False,
            "allow_email_password_login": False,
        },
    }


@router.get("/webapp/access-mode")
def access_mode(
    app_id: Annotated[str | None, Query(alias="appId")] = None,
    app_code: Annotated[str | None, Query(alias="appCode")] = None,
) -> dict[str, Any]:
    """Every site is public here (no web app auth): Dify's answer without enterprise auth."""
    return {"accessMode": "public"}


@router.get("/webapp/permission")
def permission(app_id: Annotated[str | None, Query(alias="appId")] = None) -> dict[str, Any]:
    return {"result": True}
