"""app-was-created → the workspace's installed-app record (idempotent)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import App
from conduit.infra.resources import Resources
from conduit.services.apps import ensure_installed_app
from conduit.signals.signals import app_was_created


def create_installed_app(app: App, *, resources: Resources, **_: Any) -> None:
    with resources.db.transaction() as session:
        ensure_installed_app(session, app.id)


SIGNALS = (app_was_created,)
HANDLER = create_installed_app
