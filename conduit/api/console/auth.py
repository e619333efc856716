"""Console login, token refresh, logout and the caller's profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduit.api.console.schemas import LoginBody, RefreshBody
from conduit.api.deps import CurrentIdentity, DbSession, Policy
from conduit.services import auth

router = APIRouter(tags=["console: auth"])


def _tokens(pair: auth.TokenPair) -> dict[str, Any]:
    return {
        "result": "success",
        "data": {"access_token": pair.access_token, "refresh_token": pair.refresh_token},
    }


@router.post("/login")
def login(body: LoginBody, session: DbSession, policy: Policy) -> dict[str, Any]:
    return _tokens(auth.login(session, policy, email=body.email, password=body.password))


@router.post("/refresh-token")
def refresh_token(body: RefreshBody, session: DbSession, policy: Policy) -> dict[str, Any]:
    return _tokens(auth.refresh(session, policy, refresh_token=body.refresh_token))


@router.post("/logout")
def logout(identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    auth.logout(session, session_id=identity.session_id)
    return {"result": "success"}


@router.get("/account/profile")
def profile(identity: CurrentIdentity) -> dict[str, Any]:
    account = identity.account
    return {
        "data": {
            "id": account.id,
            "name": account.name,
            "email": account.email,
            "last_login_at": int(account.last_login_at.timestamp())
            if account.last_login_at
            else None,
            "created_at": int(account.created_at.timestamp()),
        }
    }
