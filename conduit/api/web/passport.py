"""`GET /api/passport`, and what the web app asks before it has one: system features, the
access mode, and a member's sign-in for a private site (`POST /api/login`; no passport
needed)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from conduit.api import runs as run_controller
from conduit.api.bodies import check_declared_body
from conduit.api.console.schemas import LoginBody
from conduit.api.deps import DbSession
from conduit.api.web.deps import APP_CODE_HEADER, passport_policy
from conduit.errors import RateLimitError
from conduit.services import web_passport

router = APIRouter(tags=["web: passport"])


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@router.get("/passport")
def passport(request: Request, session: DbSession) -> dict[str, Any]:
    """A passport for the site `X-App-Code`: a new end user, or (a returning browser sending
    its passport as `Authorization: Bearer`) the same one again; a member signed in (their web
    login token as the bearer) gets theirs — the only way into a private site."""
    token = web_passport.issue_passport(
        session,
        passport_policy(request),
        app_code=request.headers.get(APP_CODE_HEADER),
        old_token=_bearer(request),
    )
    return {"access_token": token}


LOGINS_PER_MINUTE = 20  # sign-ins a minute from one address, and to one account (429)


@router.post("/login", dependencies=[Depends(check_declared_body)])  # (JSON only: 415)
async def login(body: LoginBody, request: Request) -> dict[str, Any]:
    """A workspace member's sign-in to the web tier (Dify's web app login): a web login token,
    which `/api/passport` takes for the sites of the member's workspaces."""
    runs = run_controller.runs_of(request)
    address = request.client.host if request.client is not None else "unknown"
    # Per address, and per account (guesses from many addresses at one account's password).
    for key in (f"web-login:{address}", f"web-login-email:{body.email.lower()}"):
        wait = await runs.backends.limiter.hit(key, limit=LOGINS_PER_MINUTE, window=60.0)
        if wait > 0:
            raise RateLimitError(retry_after=wait)
    policy = passport_policy(request)

    def sign_in() -> str:
        with runs.db.transaction() as session:
            return web_passport.web_login(session, policy, email=body.email, password=body.password)

    token = await asyncio.to_thread(sign_in)
    return {"result": "success", "data": {"access_token": token}}


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
        "webapp_auth": {  # (sites may be private: members sign in with their password)
            "enabled": True,
            "allow_sso": False,
            "sso_config": {"protocol": ""},
            "allow_email_code_login": False,
            "allow_email_password_login": True,
        },
    }


@router.get("/webapp/access-mode")
def access_mode(
    session: DbSession,
    app_id: Annotated[str | None, Query(alias="appId")] = None,
    app_code: Annotated[str | None, Query(alias="appCode")] = None,
) -> dict[str, Any]:
    """Who may use the site: `public` or `private_all` (its workspace's members)."""
    mode = web_passport.access_mode(session, app_code=app_code, app_id=app_id)
    return {"accessMode": mode}


@router.get("/webapp/permission")
def permission(
    request: Request,
    session: DbSession,
    app_id: Annotated[str | None, Query(alias="appId")] = None,
) -> dict[str, Any]:
    """Whether the bearer (a passport or a web login) may use the app's site."""
    allowed = web_passport.permitted(
        session, passport_policy(request), app_id=app_id, token=_bearer(request) or ""
    )
    return {"result": allowed}
