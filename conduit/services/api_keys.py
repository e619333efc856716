"""Service API keys (`app-…` and `dataset-…`): only a SHA-256 and a display prefix are stored;
the token itself is shown once, when it is created."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from conduit.db.models import (
    ApiToken,
    ApiTokenType,
    App,
    AppStatus,
    Membership,
    Role,
    Tenant,
    TenantStatus,
    utcnow,
)
from conduit.errors import ApiKeyNotFound, BadRequest, Forbidden, Unauthorized
from conduit.infra.cache import MISSING, Cache, get_or_load
from conduit.services import apps
from conduit.services.apps import get_app, require_role

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 24
MAX_KEYS_PER_RESOURCE = 10
PREFIX_LENGTH = 8  # characters after "app-" / "dataset-" that are kept for display
KEY_CACHE_TTL = 300


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token(kind: ApiTokenType) -> str:
    return f"{kind.value}-" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def _readable(tenant_id: str, kind: ApiTokenType, app_id: str | None) -> Select[ApiToken]:
    """The only way to select keys: one workspace, one kind, one app (or none for datasets)."""
    query = select(ApiToken).where(ApiToken.tenant_id == tenant_id, ApiToken.type == kind)
    if kind == ApiTokenType.APP:
        query = query.where(ApiToken.app_id == app_id)
    return query


def display(key: ApiToken) -> dict[str, Any]:
    return {
        "id": key.id,
        "type": key.type.value,
        "token": key.token_prefix + "…",
        "last_used_at": int(key.last_used_at.timestamp()) if key.last_used_at else None,
        "created_at": int(key.created_at.timestamp()),
    }


def list_keys(
    session: Session, *, member: Membership, kind: ApiTokenType, app_id: str | None = None
) -> list[ApiToken]:
    if app_id is not None:
        get_app(session, member.tenant_id, app_id)
    return list(
        session.scalars(_readable(member.tenant_id, kind, app_id).order_by(ApiToken.created_at))
    )


@dataclass(frozen=True)
class NewKey:
    key: ApiToken
    token: str


def create_key(
    session: Session, *, member: Membership, kind: ApiTokenType, app_id: str | None = None
) -> NewKey:
    if app_id is not None:
        get_app(session, member.tenant_id, app_id)
    required = Role.EDITOR if kind == ApiTokenType.APP else Role.ADMIN
    require_role(member, required, f"create {kind.value} API keys")
    count = session.scalar(
        select(func.count()).select_from(_readable(member.tenant_id, kind, app_id).subquery())
    )
    if (count or 0) >= MAX_KEYS_PER_RESOURCE:
        raise BadRequest(
            f"Cannot create more than {MAX_KEYS_PER_RESOURCE} API keys for this resource."
        )
    token = generate_token(kind)
    key = ApiToken(
        tenant_id=member.tenant_id,
        app_id=app_id,
        type=kind,
        token_hash=digest(token),
        token_prefix=token[: len(kind.value) + 1 + PREFIX_LENGTH],
        created_by=member.account_id,
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return NewKey(key=key, token=token)


def delete_key(
    session: Session,
    *,
    member: Membership,
    kind: ApiTokenType,
    key_id: str,
    cache: Cache,
    app_id: str | None = None,
) -> None:
    if app_id is not None:
        get_app(session, member.tenant_id, app_id)
    required = Role.EDITOR if kind == ApiTokenType.APP else Role.ADMIN
    require_role(member, required, f"delete {kind.value} API keys")
    key = session.scalars(
        _readable(member.tenant_id, kind, app_id).where(ApiToken.id == key_id)
    ).first()
    if key is None:
        raise ApiKeyNotFound()
    cache.delete(_key_cache_key(key.token_hash))
    session.delete(key)


def _key_cache_key(token_hash: str) -> str:
    return f"api-key:{token_hash}"


@dataclass(frozen=True)
class KeyOwner:
    """What a valid Service API key resolves to."""

    key_id: str
    tenant_id: str
    app_id: str | None
    type: str


def _owner_of(data: dict[str, Any] | None, kind: ApiTokenType) -> KeyOwner:
    if data is None or data["type"] != kind.value:
        raise Unauthorized("Access token is invalid")
    return KeyOwner(**data)


def resolve_key(session: Session, cache: Cache, *, token: str, kind: ApiTokenType) -> KeyOwner:
    """The key's owner (cached); 401 when the token is unknown or of the other scope."""
    token_hash = digest(token)

    def load() -> dict[str, Any] | None:
        key = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()
        if key is None:
            return None
        return {
            "key_id": key.id,
            "tenant_id": key.tenant_id,
            "app_id": key.app_id,
            "type": key.type.value,
        }

    return _owner_of(get_or_load(cache, _key_cache_key(token_hash), load, ttl=KEY_CACHE_TTL), kind)


def _app_cache_key(app_id: str) -> str:
    return f"app-api:{app_id}"


def _serving_app(data: dict[str, Any] | None) -> App:
    if data is None:
        raise Forbidden("The app no longer exists.")
    if data["status"] != AppStatus.NORMAL.value:
        raise Forbidden("The app's status is abnormal.")
    if not data["enable_api"]:
        raise Forbidden("The app's API service has been disabled.")
    if data["tenant_status"] == TenantStatus.ARCHIVE.value:
        raise Forbidden("The workspace's status is archived.")
    return apps.app_from_snapshot(data)


def check_app_serves_api(session: Session, owner: KeyOwner, cache: Cache | None = None) -> App:
    """Dify's checks after the token: the app exists, is normal, has its API enabled, and its
    workspace is not archived. With a `cache`, the app comes from it (invalidated with the app's
    and the workspace's tags) and is returned detached."""
    if not owner.app_id:
        raise Forbidden("The app no longer exists.")
    app_id = owner.app_id

    def load() -> dict[str, Any] | None:
        app = session.get(App, app_id)
        if app is None:
            return None
        tenant = session.get(Tenant, app.tenant_id)
        status = TenantStatus.ARCHIVE.value if tenant is None else tenant.status.value
        return apps.serving_snapshot(app, status)

    if cache is None:
        return _serving_app(load())
    data = get_or_load(
        cache,
        _app_cache_key(app_id),
        load,
        ttl=apps.APP_CACHE_TTL,
        tags=[apps.app_cache_key(app_id), apps.tenant_apps_tag(owner.tenant_id)],
    )
    return _serving_app(data)


async def serving_app_from_cache(cache: Cache, *, token: str) -> tuple[KeyOwner, App] | None:
    """`resolve_key` + `check_app_serves_api` for an `app-` key from the cache alone, without
    the database (on the event loop: `Cache.aget`): None when either entry is missing (the
    caller then takes the loading path). Raises the same 401/403 errors from cached entries."""
    key = await cache.aget(_key_cache_key(digest(token)))
    if key is MISSING:
        return None
    owner = _owner_of(key, ApiTokenType.APP)
    if not owner.app_id:
        raise Forbidden("The app no longer exists.")
    app = await cache.aget(_app_cache_key(owner.app_id))
    if app is MISSING:
        return None
    return owner, _serving_app(app)


@dataclass(frozen=True, slots=True)
class KnowledgeCaller:
    """A Knowledge API caller: the workspace of its dataset key, and the workspace's owner,
    whom a dataset key acts as (what it creates is theirs, as in Dify)."""

    tenant_id: str
    account_id: str


def knowledge_caller(session: Session, owner: KeyOwner) -> KnowledgeCaller:
    """403 when the key's workspace is archived or has no owner left."""
    row = session.execute(
        select(Tenant.status, Membership.account_id)
        .select_from(Tenant)
        .outerjoin(
            Membership,
            (Membership.tenant_id == Tenant.id) & (Membership.role == Role.OWNER),
        )
        .where(Tenant.id == owner.tenant_id)
    ).first()
    if row is None or row.status == TenantStatus.ARCHIVE:
        raise Forbidden("The workspace's status is archived.")
    if row.account_id is None:
        raise Forbidden("The workspace has no owner to act for this key.")
    return KnowledgeCaller(tenant_id=owner.tenant_id, account_id=row.account_id)
