"""The web tier's end users (`/api`, Dify's WebApp API): passports, the checks of every
request, and each end user's request rate.

A passport is a JWT signed with the server secret naming the app (`app_id`, `app_code`: the
site's code) and an end user of type "browser" — a new one per first visit, with a random
session id, never a Service API user. A returning browser sends its passport back
(`Authorization: Bearer`) and keeps its end user.

A site whose access mode is `private_all` serves the members of its app's workspace only
(Dify's web app access control): a member signs in (`POST /api/login`: a web login token, Dify's
`webapp_login_token`) and sends that token for the passport, which then names the member
(`user_id`) and the member's own end user of the app. Membership is checked again on every
request of a private site, so a member removed, an account banned or a site made private
since a passport was issued is refused (401 `web_app_access_denied`); no sign-in at all is
401 `web_sso_auth_required`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.core.runs.limits import Limiter
from conduit.db.models import Account, AccountStatus, App, AppStatus, EndUser, Membership, Site
from conduit.errors import (
    BadRequest,
    NotFound,
    RateLimitError,
    Unauthorized,
    WebAppAccessDenied,
    WebAppAuthRequired,
)
from conduit.services import accounts
from conduit.services.end_users import (
    BROWSER,
    create_browser_end_user,
    find_end_user,
    member_end_user,
)
from conduit.services.sites import PUBLIC

ALGORITHM = "HS256"
SUBJECT = "Web API Passport"
LOGIN_SUBJECT = "Web App Login"
LOGIN_SOURCE = "webapp_login_token"  # (Dify's token_source of a web login)
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
    login_hours: int = 24  # a web login token's life (a member's passports outlive it)


def _site_by_code(session: Session, code: str) -> tuple[Site, App] | None:
    site = session.scalars(select(Site).where(Site.code == code)).first()
    if site is None:
        return None
    app = session.get(App, site.app_id)
    return None if app is None else (site, app)


def web_login(session: Session, policy: PassportPolicy, *, email: str, password: str) -> str:
    """`POST /api/login`: a web login token for an account with a workspace (401 for a wrong
    email or password, as the console's sign-in), which a private site's passport takes."""
    account = accounts.authenticate(session, email=email, password=password)
    accounts.current_membership(session, account.id)  # an account without a workspace: 403
    now = int(time.time())
    claims = {
        "sub": LOGIN_SUBJECT,
        "token_source": LOGIN_SOURCE,
        "auth_type": "internal",
        "user_id": account.id,
        "iat": now,
        "exp": now + policy.login_hours * 3600,
    }
    return jwt.encode(claims, policy.secret_key, algorithm=ALGORITHM)


def _decoded(policy: PassportPolicy, token: str | None) -> dict[str, Any] | None:
    """A bearer token's claims, or None when it is not one of this server's (or expired)."""
    if not token:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token, policy.secret_key, algorithms=[ALGORITHM], options={"require": ["exp"]}
        )
    except jwt.PyJWTError:
        return None
    return claims


def _require_member(session: Session, app: App, account_id: Any) -> None:
    """The account is an active member of the app's workspace; else 401 web_app_access_denied."""
    if isinstance(account_id, str):
        found = session.scalars(
            select(Membership.id)
            .join(Account, Account.id == Membership.account_id)
            .where(
                Membership.account_id == account_id,
                Membership.tenant_id == app.tenant_id,
                Account.status == AccountStatus.ACTIVE,
            )
        ).first()
        if found is not None:
            return
    raise WebAppAccessDenied()


def issue_passport(
    session: Session, policy: PassportPolicy, *, app_code: str | None, old_token: str | None
) -> str:
    """`GET /api/passport`: a passport for the site `app_code` (404 when it is unknown or its
    app is not served). `old_token` (the request's bearer) is a web login token — the passport
    names its member and the member's end user — or a returning browser's passport of the
    same app — the same end user (and member) again; else a new end user. A private site
    takes only members (see the module's docstring)."""
    if not app_code:
        raise Unauthorized("X-App-Code header is missing.")
    found = _site_by_code(session, app_code)
    if found is None:
        raise NotFound("Site not found.")
    site, app = found
    if app.status != AppStatus.NORMAL or not app.enable_site or site.status != "normal":
        raise NotFound(SITE_DISABLED)
    given = _decoded(policy, old_token)
    account_id: str | None = None
    end_user: EndUser | None = None
    if given is not None and given.get("sub") == LOGIN_SUBJECT:
        # A member's sign-in counts on a private site only: a public one is anyone's, and
        # gives no other workspace a member's identity.
        signed_in = given.get("token_source") == LOGIN_SOURCE
        if signed_in and site.access_mode != PUBLIC and isinstance(given.get("user_id"), str):
            account_id = given["user_id"]
    elif given is not None and given.get("sub") == SUBJECT and given.get("app_id") == app.id:
        account_id = given.get("user_id") if isinstance(given.get("user_id"), str) else None
        if account_id is None:
            end_user = _returning(session, policy, app, old_token)
    if site.access_mode != PUBLIC:
        if account_id is None:
            raise WebAppAuthRequired()
        _require_member(session, app, account_id)
    if account_id is not None:
        end_user = member_end_user(session, app, account_id)
    if end_user is None:
        end_user = create_browser_end_user(session, app)
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
    if account_id is not None:
        claims["user_id"] = account_id
    return jwt.encode(claims, policy.secret_key, algorithm=ALGORITHM)


def access_mode(session: Session, *, app_code: str | None, app_id: str | None) -> str:
    """`GET /api/webapp/access-mode`: the site's mode, by its code or its app's id (404)."""
    site = None
    if app_code:
        site = session.scalars(select(Site).where(Site.code == app_code)).first()
    elif app_id:
        site = session.scalars(select(Site).where(Site.app_id == app_id)).first()
    if site is None:
        raise NotFound("Site not found.")
    return site.access_mode


def permitted(session: Session, policy: PassportPolicy, *, app_id: str | None, token: str) -> bool:
    """`GET /api/webapp/permission`: whether the bearer's passport (or web login) may use the
    app's site now."""
    site = session.scalars(select(Site).where(Site.app_id == app_id)).first() if app_id else None
    if site is None:
        raise NotFound("Site not found.")
    if site.access_mode == PUBLIC:
        return True
    app = session.get(App, site.app_id)
    claims = _decoded(policy, token) or {}
    if app is None or claims.get("sub") not in (SUBJECT, LOGIN_SUBJECT):
        return False
    try:
        _require_member(session, app, claims.get("user_id"))
    except WebAppAccessDenied:
        return False
    return True


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
    if site.access_mode != PUBLIC:  # (made private since: a member's passport only)
        _require_member(session, app, claims.get("user_id"))
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
