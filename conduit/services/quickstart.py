"""`conduit quickstart`: an admin, a workspace, a chat app and an API key, created once and
reused on later calls (the key is kept in the data dir because it is shown only once)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduit.db.models import ApiToken, ApiTokenType, App, AppMode, Membership, Role
from conduit.services import accounts, api_keys, apps

APP_NAME = "Quickstart chat"


@dataclass
class Quickstart:
    email: str
    password: str
    workspace_id: str
    app_id: str
    api_key: str
    created: bool


def _state_path(data_dir: Path) -> Path:
    return data_dir / "quickstart.json"


def load_state(data_dir: Path) -> dict[str, str] | None:
    path = _state_path(data_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None


def save_state(data_dir: Path, found: Quickstart) -> None:
    path = _state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({k: v for k, v in asdict(found).items() if k != "created"}, handle, indent=2)


def ensure(
    session: Session,
    data_dir: Path,
    *,
    email: str | None,
    password: str | None,
    server_secret: str,
) -> Quickstart:
    """Reuse what an earlier quickstart made (if it still exists), else create it."""
    state = load_state(data_dir) or {}
    email = email or state.get("email") or "admin@conduit.local"
    password = password or state.get("password") or secrets.token_urlsafe(12)
    account, tenant, created = accounts.create_admin(
        session, email=email, password=password, workspace="Quickstart"
    )
    member = session.scalars(
        select(Membership).where(
            Membership.account_id == account.id, Membership.tenant_id == tenant.id
        )
    ).one()
    app = session.get(App, state["app_id"]) if state.get("app_id") else None
    if app is None or app.tenant_id != tenant.id:
        app = apps.create_app(
            session,
            member=member,
            fields=apps.AppFields(
                name=APP_NAME,
                mode=AppMode.CHAT,
                description="Made by `conduit quickstart`.",
                model_config={"pre_prompt": "You are a helpful assistant. Answer briefly."},
            ),
            server_secret=server_secret,
        )
        created = True
    key = state.get("api_key")
    known = (
        key
        and session.scalars(
            select(ApiToken).where(
                ApiToken.token_hash == api_keys.digest(key), ApiToken.app_id == app.id
            )
        ).first()
    )
    if not known:
        key = api_keys.create_key(
            session, member=member, kind=ApiTokenType.APP, app_id=app.id
        ).token
        created = True
    assert member.role == Role.OWNER
    return Quickstart(account.email, password, tenant.id, app.id, str(key), created)
