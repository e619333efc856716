"""model-provider-was-updated → forget that the workspace had no default provider (a run start
asks for it: `model_providers.app_model_ref`)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import ProviderCredential
from conduit.infra.resources import Resources
from conduit.services.model_providers import no_default_key
from conduit.signals.signals import model_provider_was_updated


def invalidate_default_provider(
    provider: ProviderCredential, *, resources: Resources, **_: Any
) -> None:
    resources.cache.delete(no_default_key(provider.tenant_id))


SIGNALS = (model_provider_was_updated,)
HANDLER = invalidate_default_provider
