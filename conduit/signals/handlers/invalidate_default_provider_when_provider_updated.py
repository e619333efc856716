"""model-provider-was-updated → forget that the workspace had no default provider (a run start
asks for it: `model_providers.app_model_ref`)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import ProviderCredential
from conduit.infra.runtime import resources
from conduit.services.model_providers import no_default_key
from conduit.signals.signals import model_provider_was_updated


@model_provider_was_updated.connect
def invalidate_default_provider(provider: ProviderCredential, **_: Any) -> None:
    resources().cache.delete(no_default_key(provider.tenant_id))
