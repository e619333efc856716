"""Workspace model providers (endpoint + encrypted API key + model names) and the app model
config that picks one. Every provider query goes through `readable_providers()`, the one
tenant-scoping helper; API keys are encrypted at rest and only ever shown masked.

An app refers to a workspace provider as `model.provider = "workspace:<provider id>"`; an app
without a provider (or "default") is served by the workspace's default provider when it has
one, else by the server's. A run's `model_ref` carries only the provider id: the executor (maybe
a Celery worker) reads and decrypts the key itself (`ModelRegistry.resolve`), so no plain key
ever reaches the outbox or the broker.

Usage and quota: a message served by a workspace provider records it as its `model_provider`
("workspace:<id>"); `message-was-created` adds the message's tokens to the provider's
`quota_used` (`add_usage`), and `check_quota` refuses to start a run on a provider whose
`quota_used` reached its `quota_limit`. The limit is soft by the runs already in flight: their
tokens are counted when they finish.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.core.llm.errors import ProviderNotConfigured, ProviderQuotaExceeded
from conduit.core.llm.provider import ChatMessage, ChatModel, GenerationParams
from conduit.db.models import App, Membership, ProviderCredential, Role, utcnow
from conduit.errors import Conflict, InvalidParam, NotFound
from conduit.infra.cache import Cache
from conduit.infra.crypto import DecryptionError, cipher, mask
from conduit.infra.db import Database
from conduit.services.apps import require_role
from conduit.signals import model_provider_was_updated, send_after_commit

PROVIDER_TYPES = ("openai_api_compatible",)
SERVER_PROVIDERS = ("local", "openai_api_compatible")
DEFAULT_PROVIDERS = (None, "", "default")
WORKSPACE_PREFIX = "workspace:"
HIDDEN = "[__HIDDEN__]"  # what Dify's console sends back for a secret it did not change
MAX_MODELS = 100
MAX_QUOTA = 10**15  # tokens; far beyond any real budget, well inside a BIGINT
_HELD = "conduit_resolved_providers"  # session.info key (`_hold`)


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP: Literal[_Keep.KEEP] = _Keep.KEEP  # "leave as is", where None is a value (no quota limit)


class ProviderNotFound(NotFound):
    code = "provider_not_found"
    default_message = "Model provider not found."


@dataclass
class ProviderFields:
    """What a caller may set on a provider; None means "leave as is" on update."""

    provider: str | None = None
    name: str | None = None
    base_url: str | None = None
    api_key: str | None = None  # "" clears it; None or the masked/hidden value keeps it
    models: list[str] | None = None
    embedding_models: list[str] | None = None
    rerank_models: list[str] | None = None
    is_default: bool | None = None
    quota_limit: int | _Keep | None = KEEP  # tokens; None: unlimited
    quota_used: int | None = None  # only 0 (a reset) is accepted


def readable_providers(tenant_id: str) -> Select[ProviderCredential]:
    """The only way to select providers: scoped to one workspace (`_held` is its by-id twin
    that a row already in the session answers without a query)."""
    return select(ProviderCredential).where(ProviderCredential.tenant_id == tenant_id)


def _held(session: Session, tenant_id: str, provider_id: str) -> ProviderCredential | None:
    """A provider of this workspace by id, from the session's identity map when it is loaded
    already (`_hold`), else by one query."""
    row = session.get(ProviderCredential, provider_id)
    return row if row is not None and row.tenant_id == tenant_id else None


def _hold(session: Session, row: ProviderCredential) -> ProviderCredential:
    """Keep `row` referenced while the session lives: the identity map holds rows only weakly,
    and `check_quota` reads the row `app_model_ref` resolved again, without a query."""
    session.info.setdefault(_HELD, {})[row.id] = row
    return row


def workspace_reference(provider_id: str) -> str:
    return f"{WORKSPACE_PREFIX}{provider_id}"


def snapshot(row: ProviderCredential, secret: str) -> dict[str, Any]:
    """The provider as routes show it: the API key masked, never in full."""
    data: dict[str, Any] = {
        "id": row.id,
        "provider": row.provider,
        "name": row.name,
        "reference": workspace_reference(row.id),
        "base_url": row.base_url,
        "api_key": None,
        "models": list(row.models or []),
        "embedding_models": list(row.embedding_models or []),
        "rerank_models": list(row.rerank_models or []),
        "is_default": row.is_default,
        "quota_limit": row.quota_limit,
        "quota_used": row.quota_used,
        "last_used_at": int(row.last_used_at.timestamp()) if row.last_used_at else None,
        "created_at": int(row.created_at.timestamp()),
        "updated_at": int(row.updated_at.timestamp()),
    }
    if row.encrypted_api_key:
        try:
            data["api_key"] = mask(cipher(secret).decrypt(row.encrypted_api_key))
        except DecryptionError as error:
            data["error"] = str(error)
    return data


def get_provider(session: Session, tenant_id: str, provider_id: str) -> ProviderCredential:
    row = session.scalars(
        readable_providers(tenant_id).where(ProviderCredential.id == provider_id)
    ).first()
    if row is None:
        raise ProviderNotFound()
    return row


def list_providers(session: Session, *, member: Membership) -> list[ProviderCredential]:
    query = readable_providers(member.tenant_id).order_by(
        ProviderCredential.created_at, ProviderCredential.id
    )
    return list(session.scalars(query))


def create_provider(
    session: Session, *, member: Membership, fields: ProviderFields, secret: str
) -> ProviderCredential:
    require_role(member, Role.ADMIN, "manage model providers")
    provider = _provider_type(fields.provider)
    row = ProviderCredential(
        tenant_id=member.tenant_id,
        provider=provider,
        name=_name(fields.name),
        base_url=_base_url(fields.base_url),
        encrypted_api_key=_encrypted(fields.api_key, secret),
        models=_models(fields.models or []),
        embedding_models=_models(fields.embedding_models or [], "embedding_models"),
        rerank_models=_models(fields.rerank_models or [], "rerank_models"),
        is_default=bool(fields.is_default),
        quota_limit=None if fields.quota_limit is KEEP else _quota_limit(fields.quota_limit),
        quota_used=0,
    )
    _check_name_free(session, row)
    if row.is_default:
        _clear_defaults(session, member.tenant_id)
    _insert(session, row)
    send_after_commit(session, model_provider_was_updated, row)
    return row


def update_provider(
    session: Session, *, member: Membership, provider_id: str, fields: ProviderFields, secret: str
) -> ProviderCredential:
    require_role(member, Role.ADMIN, "manage model providers")
    row = get_provider(session, member.tenant_id, provider_id)
    if fields.provider is not None:
        row.provider = _provider_type(fields.provider)
    if fields.name is not None:
        row.name = _name(fields.name)
    if fields.base_url is not None:
        row.base_url = _base_url(fields.base_url)
    if fields.models is not None:
        row.models = _models(fields.models)
    if fields.embedding_models is not None:
        row.embedding_models = _models(fields.embedding_models, "embedding_models")
    if fields.rerank_models is not None:
        row.rerank_models = _models(fields.rerank_models, "rerank_models")
    if fields.api_key is not None and not _unchanged_key(row, fields.api_key, secret):
        row.encrypted_api_key = _encrypted(fields.api_key, secret)
    if fields.quota_limit is not KEEP:
        row.quota_limit = _quota_limit(fields.quota_limit)
    if fields.quota_used is not None:
        row.quota_used = _quota_reset(fields.quota_used)
    _check_name_free(session, row)
    row.updated_at = utcnow()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise _name_taken(row) from None  # a concurrent writer took the name meanwhile
    if fields.is_default is not None:
        if fields.is_default and not row.is_default:
            _clear_defaults(session, member.tenant_id)
        row.is_default = fields.is_default
        session.flush()
    send_after_commit(session, model_provider_was_updated, row)
    return row


def delete_provider(session: Session, *, member: Membership, provider_id: str) -> None:
    """Apps that still name it fail their runs with `provider_not_initialize` until edited."""
    require_role(member, Role.ADMIN, "manage model providers")
    row = get_provider(session, member.tenant_id, provider_id)
    session.delete(row)
    send_after_commit(session, model_provider_was_updated, row)
    session.flush()


def provider_ref(provider: ProviderCredential) -> dict[str, Any]:
    """The `model_ref` of a workspace provider: its id, never its key (resolved by the
    executor, `ModelRegistry.resolve`), and the model an app that names none gets. Its
    "provider" is the workspace reference, which the run's message keeps as `model_provider`
    (so its usage is counted on this provider)."""
    ref: dict[str, Any] = {
        "provider": workspace_reference(provider.id),
        "credential_id": provider.id,
        "tenant_id": provider.tenant_id,
    }
    if provider.models:
        ref["default_model"] = provider.models[0]
    return ref


def probe_target(
    session: Session, *, member: Membership, provider_id: str, model: str | None, default_model: str
) -> tuple[dict[str, Any], str]:
    """What `POST /model-providers/{id}/test` calls: the provider's ref and a model name."""
    require_role(member, Role.ADMIN, "manage model providers")
    row = get_provider(session, member.tenant_id, provider_id)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidParam("model: must be a non-empty string")
    name = model or (row.models[0] if row.models else default_model)
    return provider_ref(row), name


async def check_model(
    resolve_model: Callable[[dict[str, Any]], Awaitable[ChatModel]],
    ref: dict[str, Any],
    model: str,
) -> None:
    """A one-token call through the registry; raises the `ModelError` the provider gave."""
    chat = await resolve_model(ref)
    stream = chat.stream_chat(
        [ChatMessage("user", "ping")], GenerationParams(model=model, max_tokens=1)
    )
    try:
        async for _ in stream:
            break  # the first piece proves endpoint, key and model
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


# The workspace's default provider: asked on every run of an app on the default model, so the
# statement is built once (executed with its parameter, it skips building and keying per run).
_DEFAULT = (
    select(ProviderCredential)
    .where(
        ProviderCredential.tenant_id == bindparam("tenant_id"),
        ProviderCredential.is_default.is_(True),
    )
    .order_by(ProviderCredential.updated_at.desc(), ProviderCredential.id)
    .limit(1)
)


def default_provider(session: Session, tenant_id: str) -> ProviderCredential | None:
    return session.scalars(_DEFAULT, {"tenant_id": tenant_id}).first()


# Cached: "this workspace has no default provider" (the usual case, asked by every run of an app
# on the default model). Only the absence is cached: a provider's row carries its quota, which
# every message changes. `model-provider-was-updated` drops the entry.
NO_DEFAULT_PROVIDER = "none"
NO_DEFAULT_TTL = 600


def no_default_key(tenant_id: str) -> str:
    return f"no-default-provider:{tenant_id}"


def known_without_default(cache: Cache, tenant_id: str) -> bool:
    """Whether the cache holds that the workspace has no default provider."""
    return bool(cache.get(no_default_key(tenant_id)) == NO_DEFAULT_PROVIDER)


async def aknown_without_default(cache: Cache, tenant_id: str) -> bool:
    """`known_without_default` on the event loop."""
    return bool(await cache.aget(no_default_key(tenant_id)) == NO_DEFAULT_PROVIDER)


def app_model_ref(
    session: Session | None, app: App, provider: str | None, cache: Cache | None = None
) -> dict[str, Any] | None:
    """The ref of the workspace provider serving `app`, or None (a server provider serves).

    `provider` is the app's `model.provider`. A `workspace:<id>` reference is not looked up
    here: the executor resolves it (and fails the run if it is gone). With a `cache`, a
    workspace known to have no default provider costs no query."""
    if isinstance(provider, str) and provider.startswith(WORKSPACE_PREFIX):
        return {
            "provider": provider,
            "credential_id": provider.removeprefix(WORKSPACE_PREFIX),
            "tenant_id": app.tenant_id,
        }
    if provider in DEFAULT_PROVIDERS and session is not None:
        if cache is not None and known_without_default(cache, app.tenant_id):
            return None
        found = default_provider(session, app.tenant_id)
        if found is not None:
            return provider_ref(_hold(session, found))
        if cache is not None:
            cache.set(no_default_key(app.tenant_id), NO_DEFAULT_PROVIDER, ttl=NO_DEFAULT_TTL)
    return None


# --- usage and quota ------------------------------------------------------------------------


def check_quota(session: Session, ref: dict[str, Any]) -> None:
    """Refuse to start a run on a workspace provider whose token quota is used up (400
    `provider_quota_exceeded`). Costs no query when the provider is the workspace default
    (`app_model_ref` loaded it); a provider that is gone is left to the executor to report."""
    credential_id, tenant_id = ref.get("credential_id"), ref.get("tenant_id")
    if not credential_id or not tenant_id:
        return
    row = _held(session, str(tenant_id), str(credential_id))
    if row is None or row.quota_limit is None or row.quota_used < row.quota_limit:
        return
    raise ProviderQuotaExceeded(
        f"The token quota of the model provider {row.name!r} is used up ({row.quota_used} of "
        f"{row.quota_limit} tokens). Please go to Settings -> Model Provider to raise it."
    )


def workspace_provider_id(model_provider: str | None) -> str | None:
    """The provider id in a message's `model_provider` ("workspace:<id>"), else None."""
    if model_provider and model_provider.startswith(WORKSPACE_PREFIX):
        return model_provider.removeprefix(WORKSPACE_PREFIX) or None
    return None


def add_usage(session: Session, provider_id: str, tokens: int) -> None:
    """Count `tokens` on the provider: one UPDATE, the sum done by the database (concurrent
    messages never lose one), no row loaded. A deleted provider matches nothing."""
    session.execute(
        update(ProviderCredential)
        .where(ProviderCredential.id == provider_id)
        .values(quota_used=ProviderCredential.quota_used + tokens, last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- validation of the provider fields -----------------------------------------------------


def _provider_type(value: str | None) -> str:
    if value is None:
        return PROVIDER_TYPES[0]
    if value not in PROVIDER_TYPES:
        raise InvalidParam(f"provider: must be one of {', '.join(PROVIDER_TYPES)}")
    return value


def _name(value: str | None) -> str:
    name = (value or "").strip()
    if not name or len(name) > 255:
        raise InvalidParam("name: must be 1 to 255 characters")
    return name


def _base_url(value: str | None) -> str:
    url = (value or "").strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(url) > 2048
        or any(c.isspace() for c in url)
    ):
        raise InvalidParam("base_url: must be an http:// or https:// URL")
    return url.rstrip("/")


def _models(values: Any, field: str = "models") -> list[str]:
    if not isinstance(values, list):
        raise InvalidParam(f"{field}: must be a list of model names")
    if len(values) > MAX_MODELS:
        raise InvalidParam(f"{field}: at most {MAX_MODELS} model names")
    names: list[str] = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > 255:
            raise InvalidParam(f"{field}[{index}]: must be a model name (1 to 255 characters)")
        if value.strip() not in names:
            names.append(value.strip())
    return names


def _quota_limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_QUOTA:
        raise InvalidParam(f"quota_limit: must be null (unlimited) or tokens from 0 to {MAX_QUOTA}")
    return value


def _quota_reset(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value != 0:
        raise InvalidParam("quota_used: can only be reset to 0")
    return 0


def _encrypted(api_key: str | None, secret: str) -> str | None:
    if api_key is None or api_key == "":
        return None
    if not isinstance(api_key, str) or len(api_key) > 4096 or api_key != api_key.strip():
        raise InvalidParam("api_key: must be a string without surrounding spaces")
    return cipher(secret).encrypt(api_key)


def _unchanged_key(row: ProviderCredential, api_key: str, secret: str) -> bool:
    """The console sends back the hidden marker or the masked key for an unchanged key."""
    if api_key == HIDDEN:
        return True
    if not row.encrypted_api_key or "…" not in api_key:
        return False
    try:
        return mask(cipher(secret).decrypt(row.encrypted_api_key)) == api_key
    except DecryptionError:
        return False


def _name_taken(row: ProviderCredential) -> Conflict:
    return Conflict(f"name: a {row.provider} provider named {row.name!r} already exists")


def _check_name_free(session: Session, row: ProviderCredential) -> None:
    query = readable_providers(row.tenant_id).where(
        ProviderCredential.provider == row.provider, ProviderCredential.name == row.name
    )
    if row.id is not None:
        query = query.where(ProviderCredential.id != row.id)
    with session.no_autoflush:
        if session.scalars(query).first() is not None:
            raise _name_taken(row)


def _insert(session: Session, row: ProviderCredential) -> None:
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise _name_taken(row) from None  # a concurrent create won the unique constraint


def _clear_defaults(session: Session, tenant_id: str) -> None:
    session.execute(
        update(ProviderCredential)
        .where(ProviderCredential.tenant_id == tenant_id, ProviderCredential.is_default.is_(True))
        .values(is_default=False, updated_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )


def workspace_credentials(
    db: Database, secret: str, credential_id: str, tenant_id: str
) -> dict[str, Any]:
    """A workspace provider's endpoint and plain API key (`ModelRegistry`'s credentials, bound
    to the database and the server secret by `conduit/bootstrap.py`)."""
    with db.sessions() as session:
        row = session.get(ProviderCredential, credential_id)
        if row is None or row.tenant_id != tenant_id:
            raise ProviderNotConfigured(
                "The app's model provider no longer exists in this workspace. "
                "Please go to Settings -> Model Provider and choose another one."
            )
        provider, base_url, sealed = row.provider, row.base_url, row.encrypted_api_key
    try:
        api_key = cipher(secret).decrypt(sealed) if sealed else None
    except DecryptionError as error:
        raise ProviderNotConfigured(str(error)) from None
    return {"provider": provider, "base_url": base_url, "api_key": api_key}
