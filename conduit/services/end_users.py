"""End users: get-or-create by (app, type, `user` string). The Service API's are keyed by the
caller's `user` (type "service-api"); the web tier's by a random session id its passport names
(type "browser", `create_browser_end_user`). The two are separate identities even when their
strings are equal: every lookup names its type."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from conduit.db.models import App, EndUser
from conduit.errors import EndUserNotFound
from conduit.infra.cache import MISSING, Cache
from conduit.services.apps import APP_CACHE_TTL, app_cache_key

ANONYMOUS = "DEFAULT-USER"
SERVICE_API = "service-api"
BROWSER = "browser"


def _cache_key(app_id: str, session_id: str, user_type: str) -> str:
    # The `user` string is the caller's: hashed, so any length and any characters make a key.
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    if user_type == SERVICE_API:
        return f"end-user:{app_id}:{digest}"
    return f"end-user:{app_id}:{user_type}:{digest}"


async def cached_end_user(
    cache: Cache, app: App, user: str | None, user_type: str = SERVICE_API
) -> EndUser | None:
    """The caller's end user from the cache alone (on the event loop; detached), or None when
    the cache does not hold it (`get_or_create_end_user` then looks in the database)."""
    session_id = user or ANONYMOUS
    cached = await cache.aget(_cache_key(app.id, session_id, user_type))
    return None if cached is MISSING else _detached(app, session_id, user_type, cached)


def _detached(app: App, session_id: str, user_type: str, cached: dict[str, Any]) -> EndUser:
    known = EndUser(
        id=cached["id"],
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=user_type,
        session_id=session_id,
        external_user_id=cached["external_user_id"],
        is_anonymous=cached["is_anonymous"],
    )
    make_transient_to_detached(known)
    return known


def get_or_create_end_user(
    session: Session,
    app: App,
    user: str | None,
    cache: Cache | None = None,
    user_type: str = SERVICE_API,
) -> EndUser:
    """The caller's end user; a missing `user` is the shared anonymous one (Dify's rule).

    With a `cache`, an end user already stored is taken from it (detached: its id is what a
    run needs) and no query is made. Only a row found by the query is cached, never one just
    created: that one exists only if this transaction commits. The entry goes with the app's
    cache tag, hence with the app (whose deletion takes its end users along)."""
    session_id = user or ANONYMOUS
    key = _cache_key(app.id, session_id, user_type)
    if cache is not None:
        cached = cache.get(key)
        if cached is not MISSING:
            return _detached(app, session_id, user_type, cached)
    query = select(EndUser).where(
        EndUser.app_id == app.id, EndUser.type == user_type, EndUser.session_id == session_id
    )
    found = session.scalars(query).first()
    if found is not None:
        if cache is not None:
            entry = {
                "id": found.id,
                "external_user_id": found.external_user_id,
                "is_anonymous": found.is_anonymous,
            }
            cache.set(key, entry, ttl=APP_CACHE_TTL, tags=[app_cache_key(app.id)])
        return found
    end_user = EndUser(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=user_type,
        session_id=session_id,
        external_user_id=session_id,
        is_anonymous=user is None,
    )
    try:
        with session.begin_nested():
            session.add(end_user)
    except IntegrityError:
        # A concurrent first request of the same user created it: use theirs. Else the row
        # broke another constraint (the app is gone meanwhile): the caller sees that error.
        existing = session.scalars(query).first()
        if existing is None:
            raise
        return existing
    return end_user


def create_browser_end_user(session: Session, app: App) -> EndUser:
    """A new anonymous end user of the web tier, under a random session id (Dify's passport)."""
    end_user = EndUser(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=BROWSER,
        session_id=secrets.token_urlsafe(24),
        external_user_id=None,
        is_anonymous=True,
    )
    session.add(end_user)
    session.flush()
    return end_user


def member_end_user(session: Session, app: App, account_id: str) -> EndUser:
    """The web tier's end user of a workspace member signed in to the site (a private one, or
    a public one they came to signed in): one per member and app, whichever browser they use
    (its session id names the account, as Dify's does)."""
    session_id = f"account-{account_id}"
    query = select(EndUser).where(
        EndUser.app_id == app.id, EndUser.type == BROWSER, EndUser.session_id == session_id
    )
    found = session.scalars(query).first()
    if found is not None:
        return found
    end_user = EndUser(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type=BROWSER,
        session_id=session_id,
        external_user_id=None,
        is_anonymous=False,
    )
    try:
        with session.begin_nested():  # (two first visits at once: one row)
            session.add(end_user)
    except IntegrityError:
        found = session.scalars(query).first()
        if found is None:  # (another constraint: the app went away meanwhile)
            raise
        return found
    return end_user


def find_end_user(session: Session, app: App, end_user_id: str, user_type: str) -> EndUser | None:
    """The end user `end_user_id` of `app` and of `user_type`, if it exists."""
    return session.scalars(
        select(EndUser).where(
            EndUser.id == end_user_id, EndUser.app_id == app.id, EndUser.type == user_type
        )
    ).first()


def end_user_view(session: Session, app: App, end_user_id: str) -> dict[str, Any]:
    """`GET /v1/end-users/{id}`: one of the app's end users, of either type (Dify's fields;
    another app's, or none, is a 404 `end_user_not_found`)."""
    found = session.scalars(
        select(EndUser).where(EndUser.id == end_user_id, EndUser.app_id == app.id)
    ).first()
    if found is None:
        raise EndUserNotFound()
    return {
        "id": found.id,
        "tenant_id": found.tenant_id,
        "app_id": found.app_id,
        "type": found.type,
        "external_user_id": found.external_user_id,
        "name": found.name,
        "is_anonymous": found.is_anonymous,
        "session_id": found.session_id,
        "created_at": found.created_at.isoformat(),
        "updated_at": found.updated_at.isoformat(),
    }
