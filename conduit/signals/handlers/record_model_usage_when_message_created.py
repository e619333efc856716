"""message-was-created → model usage counters (tokens and runs by provider, model, outcome)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import Message
from conduit.infra import metrics
from conduit.infra.resources import Resources
from conduit.services.model_providers import workspace_provider_id
from conduit.signals.signals import message_was_created


def record_model_usage(
    message: Message, *, resources: Resources, status: str = "unknown", **_: Any
) -> None:
    provider = message.model_provider or "unknown"
    if workspace_provider_id(provider) is not None:
        provider = "workspace"  # one label for all workspace providers, not one per id
    model = message.model_id or "unknown"
    metrics.MODEL_RUNS.labels(provider=provider, model=model, status=status).inc()
    metrics.MODEL_TOKENS.labels(provider=provider, model=model, kind="prompt").inc(
        message.message_tokens
    )
    metrics.MODEL_TOKENS.labels(provider=provider, model=model, kind="completion").inc(
        message.answer_tokens
    )


SIGNALS = (message_was_created,)
HANDLER = record_model_usage
