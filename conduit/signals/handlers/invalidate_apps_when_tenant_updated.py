"""tenant-was-updated → drop the workspace's cached apps (they carry the workspace's status)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import Tenant
from conduit.infra.resources import Resources
from conduit.services.apps import tenant_apps_tag
from conduit.signals.signals import tenant_was_updated


def invalidate_tenant_apps(tenant: Tenant, *, resources: Resources, **_: Any) -> None:
    resources.cache.invalidate_tags(tenant_apps_tag(tenant.id))


SIGNALS = (tenant_was_updated,)
HANDLER = invalidate_tenant_apps
