"""Each app's webhook secret: made with the app, encrypted at rest, rotated with a grace.

Apart from `conduit/services/webhooks.py` (which checks the caller's workspace and role) so that
`services/apps.py` can make an app's secret in the transaction that makes the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.db.models import AppWebhookSecret, utcnow
from conduit.infra.crypto import WEBHOOK_SECRETS, Cipher, cipher
from conduit.webhooks import generate_secret


@dataclass(frozen=True)
class SecretView:
    secret: str
    previous_valid_until: datetime | None

    def as_dict(self) -> dict[str, Any]:
        until = self.previous_valid_until
        return {
            "secret": self.secret,
            "previous_secret_valid_until": int(until.timestamp()) if until else None,
        }


def _cipher(server_secret: str) -> Cipher:
    return cipher(server_secret, WEBHOOK_SECRETS)


def create_secret(session: Session, app_id: str, *, server_secret: str) -> AppWebhookSecret:
    """A new app's secret, in the transaction that creates the app."""
    row = AppWebhookSecret(
        app_id=app_id,
        encrypted_secret=_cipher(server_secret).encrypt(generate_secret()),
        created_at=utcnow(),
    )
    session.add(row)
    return row


def ensure_secret(session: Session, app_id: str, *, server_secret: str) -> AppWebhookSecret:
    """The app's secret; an app made before secrets existed (migration 0006 cannot encrypt:
    it has no server secret) gets one now, and a concurrent creator's wins."""
    row = session.get(AppWebhookSecret, app_id)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = create_secret(session, app_id, server_secret=server_secret)
    except IntegrityError:
        row = session.get(AppWebhookSecret, app_id, populate_existing=True)
        assert row is not None
    return row


def _previous_in_grace(row: AppWebhookSecret, now: datetime) -> bool:
    until = row.previous_valid_until
    return row.encrypted_previous_secret is not None and until is not None and until > now


def _view(row: AppWebhookSecret, server_secret: str, now: datetime) -> SecretView:
    return SecretView(
        _cipher(server_secret).decrypt(row.encrypted_secret),
        row.previous_valid_until if _previous_in_grace(row, now) else None,
    )


def current(session: Session, app_id: str, *, server_secret: str) -> SecretView:
    row = ensure_secret(session, app_id, server_secret=server_secret)
    return _view(row, server_secret, utcnow())


def rotate(
    session: Session, app_id: str, *, server_secret: str, grace_seconds: float
) -> SecretView:
    """A new secret; the current one stays valid for `grace_seconds` (callbacks are signed with
    both meanwhile). A secret still in an earlier grace is dropped."""
    ensure_secret(session, app_id, server_secret=server_secret)
    row = session.scalars(
        select(AppWebhookSecret).where(AppWebhookSecret.app_id == app_id).with_for_update()
    ).one()
    now = utcnow()
    if grace_seconds > 0:
        row.encrypted_previous_secret = row.encrypted_secret
        row.previous_valid_until = now + timedelta(seconds=grace_seconds)
    else:
        row.encrypted_previous_secret = None
        row.previous_valid_until = None
    row.encrypted_secret = _cipher(server_secret).encrypt(generate_secret())
    row.rotated_at = now
    session.flush()
    return _view(row, server_secret, now)


def signing_secrets(session: Session, app_id: str, *, server_secret: str) -> list[str]:
    """The secrets a callback is signed with now: the current one, then the previous one while
    its grace lasts."""
    row = ensure_secret(session, app_id, server_secret=server_secret)
    box = _cipher(server_secret)
    found = [box.decrypt(row.encrypted_secret)]
    if _previous_in_grace(row, utcnow()) and row.encrypted_previous_secret is not None:
        found.append(box.decrypt(row.encrypted_previous_secret))
    return found
