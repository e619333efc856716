"""Console sessions: login, token refresh (rotating), logout, and access-token checks."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.db.models import Account, AccountStatus, ConsoleSession, Membership, utcnow
from conduit.errors import Unauthorized
from conduit.services import accounts

ALGORITHM = "HS256"


@dataclass(frozen=True)
class TokenPolicy:
    secret_key: str
    access_minutes: int = 60
    refresh_days: int = 30


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str


@dataclass(frozen=True)
class Identity:
    """Who is calling the console: the account, its current membership and its login."""

    account: Account
    membership: Membership
    session_id: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(
    session: Session, policy: TokenPolicy, account: Account, login: ConsoleSession
) -> TokenPair:
    refresh = secrets.token_urlsafe(48)
    login.refresh_token_hash = _digest(refresh)
    login.expires_at = utcnow() + timedelta(days=policy.refresh_days)
    now = utcnow()
    access = jwt.encode(
        {
            "sub": account.id,
            "sid": login.id,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=policy.access_minutes)).timestamp()),
            "iss": "conduit-console",
        },
        policy.secret_key,
        algorithm=ALGORITHM,
    )
    return TokenPair(access_token=access, refresh_token=refresh)


def login(session: Session, policy: TokenPolicy, *, email: str, password: str) -> TokenPair:
    account = accounts.authenticate(session, email=email, password=password)
    accounts.current_membership(session, account.id)  # an account without a workspace cannot log in
    record = ConsoleSession(
        account_id=account.id, refresh_token_hash="", created_at=utcnow(), expires_at=utcnow()
    )
    session.add(record)
    session.flush()
    return _issue(session, policy, account, record)


def refresh(session: Session, policy: TokenPolicy, *, refresh_token: str) -> TokenPair:
    record = session.scalars(
        select(ConsoleSession).where(ConsoleSession.refresh_token_hash == _digest(refresh_token))
    ).first()
    if record is None or record.revoked_at is not None or record.expires_at <= utcnow():
        raise Unauthorized("The refresh token is invalid or expired.")
    account = session.get(Account, record.account_id)
    if account is None or account.status != AccountStatus.ACTIVE:
        raise Unauthorized("The refresh token is invalid or expired.")
    return _issue(session, policy, account, record)


def logout(session: Session, *, session_id: str) -> None:
    record = session.get(ConsoleSession, session_id)
    if record is not None and record.revoked_at is None:
        record.revoked_at = utcnow()


def identify(session: Session, policy: TokenPolicy, *, access_token: str) -> Identity:
    """The caller behind a console access token; 401 for an expired, malformed or revoked one."""
    try:
        claims = jwt.decode(
            access_token,
            policy.secret_key,
            algorithms=[ALGORITHM],
            issuer="conduit-console",
            options={"require": ["exp", "sub", "sid"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The access token is invalid.") from None
    record = session.get(ConsoleSession, str(claims["sid"]))
    if record is None or record.revoked_at is not None or record.account_id != claims["sub"]:
        raise Unauthorized("The session has ended; log in again.")
    account = session.get(Account, record.account_id)
    if account is None or account.status != AccountStatus.ACTIVE:
        raise Unauthorized("The account is not active.")
    membership = accounts.current_membership(session, account.id)
    return Identity(account=account, membership=membership, session_id=record.id)
