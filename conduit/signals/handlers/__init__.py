"""Signal reactions, one module per reaction. Importing this package connects them all."""

from conduit.signals.handlers import (
    create_installed_app_when_app_created,
    create_site_record_when_app_created,
    invalidate_app_cache_when_app_changed,
    invalidate_apps_when_tenant_updated,
    invalidate_default_provider_when_provider_updated,
    record_model_usage_when_message_created,
    update_provider_when_message_created,
)

__all__ = [
    "create_installed_app_when_app_created",
    "create_site_record_when_app_created",
    "invalidate_app_cache_when_app_changed",
    "invalidate_apps_when_tenant_updated",
    "invalidate_default_provider_when_provider_updated",
    "record_model_usage_when_message_created",
    "update_provider_when_message_created",
]
