"""app-was-created → the app's site record (idempotent; the provision task is the backstop)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import App
from conduit.infra.runtime import resources
from conduit.services.apps import ensure_site
from conduit.signals.signals import app_was_created


@app_was_created.connect
def create_site_record(app: App, **_: Any) -> None:
    with resources().db.transaction() as session:
        ensure_site(session, app.id)
