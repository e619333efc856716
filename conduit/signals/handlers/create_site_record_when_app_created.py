"""app-was-created → the app's site record (idempotent; the provision task is the backstop)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import App
from conduit.infra.resources import Resources
from conduit.services.apps import ensure_site
from conduit.signals.signals import app_was_created


def create_site_record(app: App, *, resources: Resources, **_: Any) -> None:
    with resources.db.transaction() as session:
        ensure_site(session, app.id)


SIGNALS = (app_was_created,)
HANDLER = create_site_record
