"""The web tier's caller: the passport's app and end user (`services/web_passport.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from conduit.api.deps import get_resources, get_settings
from conduit.db.models import App, AppMode
from conduit.errors import NotChatApp, NotCompletionApp, Unauthorized
from conduit.services import web_passport
from conduit.services.web_passport import PassportPolicy, WebCaller

APP_CODE_HEADER = "X-App-Code"
INVALID_HEADER = "Invalid Authorization header format. Expected 'Bearer <api-key>' format."
CHAT_FAMILY = (AppMode.CHAT, AppMode.AGENT_CHAT, AppMode.ADVANCED_CHAT)


def passport_policy(request: Request) -> PassportPolicy:
    settings = get_settings(request)
    return PassportPolicy(secret_key=settings.secret_key(), days=settings.webapp.passport_days)


def passport_token(request: Request) -> str:
    """The bearer passport, with Dify's messages when the header is missing or malformed."""
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("Authorization header is missing.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(INVALID_HEADER)
    return token.strip()


def get_web_caller(request: Request) -> WebCaller:
    """The passport's app and end user, read in a session of its own (committed at once: a
    run opens its own transaction; the loaded rows stay usable)."""
    token = passport_token(request)
    policy = passport_policy(request)
    with get_resources(request).db.sessions() as session:
        caller = web_passport.web_caller(
            session, policy, token=token, app_code=request.headers.get(APP_CODE_HEADER)
        )
        session.commit()
    return caller


Caller = Annotated[WebCaller, Depends(get_web_caller)]


def chat_app(caller: WebCaller) -> App:
    if caller.app.mode not in CHAT_FAMILY:
        raise NotChatApp()
    return caller.app


def completion_app(caller: WebCaller) -> App:
    if caller.app.mode != AppMode.COMPLETION:
        raise NotCompletionApp()
    return caller.app
