"""The web tier's end users (`/api`, Dify's WebApp API): passports, the checks of every
request, and each end user's request rate.

A passport is a JWT signed with the server secret naming the app (`app_id`, `app_code`: the
site's code) and an end user of type "browser" — a new one per first visit, with a random
session id, never a Service API user. A returning browser sends its passport back
(`Authorization: Bearer`) and keeps its end user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.runs.limits import Limiter
from conduit.db.models import App, AppStatus, EndUser, Site
from conduit.errors import BadRequest, NotFound, RateLimitError, Unauthorized
from conduit.services.end_users import BROWSER, create_browser_end_user, find_end_user

ALGORITHM = "HS256"
SUBJECT = "Web API Passport"
SITE_DISABLED = "Site is disabled."
SITE_GONE = "Site URL is no longer valid."


@dataclass(frozen=True)
class WebCaller:
    """Who calls the web tier: the app (by its site) and the passport's end user."""

    app: App
    site: Site
    end_user: EndUser

    @property
    def user(self) -> str:
        """The run pipeline's `user` (with type "browser"): the end user's session id."""
        return self.end_user.session_id


@dataclass(frozen=True)
class PassportPolicy:
    secret_key: str
    days: int = 30


def _site_by_code(session: Session, code: str) -> tuple[Site, App] | None:
    site = session.scalars(select(Site).where(Site.code == code)).first()
    if site is None:
        return None
    app = session.get(App, site.app_id)
    return None if app is None else (site, app)


def issue_passport(
    session: Session, policy: PassportPolicy, *, app_code: str | None, old_token: str | None
) -> str:
    """`GET /api/passport`: a passport for the site `app_code` (404 when it is unknown or its
    app is not served), naming the end user of `old_token` when that is a valid passport of
    the same app, else a new end user."""
    if not app_code:
        raise Unauthorized("X-App-Code header is missing.")
    found = _site_by_code(session, app_code)
    if found is None:
        raise NotFound("Site not found.")
    site, app = found
    if app.status != AppStatus.NORMAL or not app.enable_site or site.status != "normal":
        raise NotFound(SITE_DISABLED)
    end_user = _returning(session, policy, app, old_token) or create_browser_end_user(session, app)
    now = int(time.time())
    claims = {
        "iss": app.id,
        "sub": SUBJECT,
        "app_id": app.id,
        "app_code": site.code,
        "end_user_id": end_user.id,
        "iat": now,
        "exp": now + policy.days * 86400,
    }
    return jwt.encode(claims, policy.secret_key, algorithm=ALGORITHM)


def _returning(
    session: Session, policy: PassportPolicy, app: App, old_token: str | None
) -> EndUser | None:
    """The end user of a returning browser's passport (None: none given, or not valid for
    this app: the browser then starts afresh, as on a first visit)."""
    if not old_token:
        return None
    try:
        claims = verify_token(policy, old_token)
    except Unauthorized:
        return None
    if claims.get("app_id") != app.id or not isinstance(claims.get("end_user_id"), str):
        return None
    return find_end_user(session, app, claims["end_user_id"], BROWSER)


def verify_token(policy: PassportPolicy, token: str) -> dict[str, Any]:
    """The passport's claims; 401 with Dify's messages when it is not one."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, policy.secret_key, algorithms=[ALGORITHM], options={"require": ["exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired.") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("Invalid token signature.") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token.") from None
    if claims.get("sub") != SUBJECT:
        raise Unauthorized("Invalid token.")
    return claims


def web_caller(
    session: Session, policy: PassportPolicy, *, token: str, app_code: str | None
) -> WebCaller:
    """Dify's checks of a web request, in order: the passport (401), the header's site
    against the passport's (401: a passport of another app), the app (404), its site (400
    when its code changed or it is disabled), the end user (404)."""
    claims = verify_token(policy, token)
    if app_code and claims.get("app_code") != app_code:
        raise Unauthorized("Invalid token: it was issued for another app.")
    app_id, code = claims.get("app_id"), claims.get("app_code")
    app = session.get(App, app_id) if isinstance(app_id, str) else None
    if app is None or app.status != AppStatus.NORMAL:
        raise NotFound("The app no longer exists.")
    site = session.scalars(select(Site).where(Site.app_id == app.id)).first()
    if site is None or site.code != code:
        raise BadRequest(SITE_GONE)
    if not app.enable_site or site.status != "normal":
        raise BadRequest(SITE_DISABLED)
    end_user_id = claims.get("end_user_id")
    end_user = (
        find_end_user(session, app, end_user_id, BROWSER) if isinstance(end_user_id, str) else None
    )
    if end_user is None:
        raise NotFound("End user not found.")
    return WebCaller(app=app, site=site, end_user=end_user)


async def count_request(limiter: Limiter, per_minute: int, caller: WebCaller) -> None:
    """Count one generation request of the caller's end user; 429 `rate_limit_error` beyond
    `per_minute` (0: no limit)."""
    if not per_minute:
        return
    key = f"end-user-rate:{caller.end_user.id}"
    wait = await limiter.hit(key, limit=per_minute, window=60.0)
    if wait > 0:
        raise RateLimitError(retry_after=wait)
