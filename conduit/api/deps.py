"""Dependencies as Annotated aliases: the request's session, resources, and the console caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from conduit.db.models import ApiTokenType, App
from conduit.errors import Unauthorized
from conduit.infra.cache import Cache
from conduit.infra.resources import Resources
from conduit.infra.settings import Settings
from conduit.services import api_keys, auth
from conduit.services.api_keys import KeyOwner, KnowledgeCaller
from conduit.services.auth import Identity, TokenPolicy

BEARER_REQUIRED = "Authorization header must be provided and start with 'Bearer'"


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; commits before the response is sent (scope="function")."""
    with get_resources(request).db.sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_cache(request: Request) -> Cache:
    return get_resources(request).cache


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def server_secret(request: Request) -> str:
    """The server secret (what encrypts secrets at rest)."""
    return get_settings(request).secret_key()


def get_token_policy(request: Request) -> TokenPolicy:
    policy: TokenPolicy = request.app.state.token_policy
    return policy


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header or " " not in header.strip():
        raise Unauthorized(BEARER_REQUIRED)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("Authorization scheme must be 'Bearer'")
    return token.strip()


DbSession = Annotated[Session, Depends(get_session, scope="function")]
AppCache = Annotated[Cache, Depends(get_cache)]
AppSettings = Annotated[Settings, Depends(get_settings)]
ServerSecret = Annotated[str, Depends(server_secret)]
Policy = Annotated[TokenPolicy, Depends(get_token_policy)]


def get_identity(request: Request, session: DbSession, policy: Policy) -> Identity:
    return auth.identify(session, policy, access_token=bearer_token(request))


CurrentIdentity = Annotated[Identity, Depends(get_identity)]


@dataclass(frozen=True)
class ServiceCaller:
    """A Service API caller: the app its key belongs to, and the key."""

    app: App
    key: KeyOwner


def _load_service_caller(resources: Resources, token: str) -> ServiceCaller:
    """Dify's checks in order: token (by scope), then the app's state; the database only for
    what the cache misses (the session opens no transaction when nothing is loaded)."""
    with resources.db.sessions() as session:
        owner = api_keys.resolve_key(session, resources.cache, token=token, kind=ApiTokenType.APP)
        app = api_keys.check_app_serves_api(session, owner, resources.cache)
        # End the read transaction (if the cache missed): a run opens its own, and on SQLite
        # every transaction holds the write lock. The app is detached and stays usable.
        session.commit()
    return ServiceCaller(app=app, key=owner)


async def get_service_caller(request: Request) -> ServiceCaller:
    """The bearer header first (as Dify), then the key and its app: from the cache on the
    event loop when both are cached (the usual case), else in a worker thread (a miss reads
    the database)."""
    token = bearer_token(request)
    resources = get_resources(request)
    cached = await api_keys.serving_app_from_cache(resources.cache, token=token)
    if cached is not None:
        return ServiceCaller(app=cached[1], key=cached[0])
    return await asyncio.to_thread(_load_service_caller, resources, token)


AppCaller = Annotated[ServiceCaller, Depends(get_service_caller)]


def _load_knowledge_caller(resources: Resources, token: str) -> KnowledgeCaller:
    with resources.db.sessions() as session:
        owner = api_keys.resolve_key(
            session, resources.cache, token=token, kind=ApiTokenType.DATASET
        )
        caller = api_keys.knowledge_caller(session, owner)
        session.commit()
    return caller


async def get_knowledge_caller(request: Request) -> KnowledgeCaller:
    """A dataset key (`dataset-…`): the bearer header first, then the key, in a worker thread."""
    token = bearer_token(request)
    return await asyncio.to_thread(_load_knowledge_caller, get_resources(request), token)


DatasetCaller = Annotated[KnowledgeCaller, Depends(get_knowledge_caller)]
