"""Blinker signals (definitions in `signals.py`, reactions in `handlers/`)."""

from conduit.signals.signals import (
    app_draft_workflow_was_synced,
    app_model_config_was_updated,
    app_published_workflow_was_updated,
    app_was_created,
    app_was_deleted,
    app_was_updated,
    dataset_was_deleted,
    document_index_created,
    document_was_deleted,
    message_was_created,
    model_provider_was_updated,
    send_after_commit,
    send_isolated,
    tenant_was_created,
    tenant_was_updated,
)

__all__ = [
    "app_draft_workflow_was_synced",
    "app_model_config_was_updated",
    "app_published_workflow_was_updated",
    "app_was_created",
    "app_was_deleted",
    "app_was_updated",
    "dataset_was_deleted",
    "document_index_created",
    "document_was_deleted",
    "message_was_created",
    "model_provider_was_updated",
    "send_after_commit",
    "send_isolated",
    "tenant_was_created",
    "tenant_was_updated",
]
