"""app-was-updated / app-model-config-was-updated / app-was-deleted → drop the cached app."""

from __future__ import annotations

from typing import Any

from conduit.db.models import App
from conduit.infra.resources import Resources
from conduit.services.apps import app_cache_key
from conduit.signals.signals import app_model_config_was_updated, app_was_deleted, app_was_updated


def invalidate_app_cache(app: App, *, resources: Resources, **_: Any) -> None:
    resources.cache.invalidate_tags(app_cache_key(app.id))


SIGNALS = (
    app_was_updated,
    app_model_config_was_updated,
    app_was_deleted,
)
HANDLER = invalidate_app_cache
