"""Signal reactions, one module per reaction (`SIGNALS` it reacts to, its `HANDLER`).

Nothing is connected on import: `connect_handlers` connects them all, bound to the process's
resources, and is called once by `conduit/bootstrap.py` for the server, the worker and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from conduit.infra.resources import Resources
from conduit.signals.handlers import (
    create_installed_app_when_app_created,
    create_site_record_when_app_created,
    invalidate_app_cache_when_app_changed,
    invalidate_apps_when_tenant_updated,
    invalidate_default_provider_when_provider_updated,
    record_model_usage_when_message_created,
    record_segment_hits_when_message_created,
    update_app_dataset_join_when_app_published_workflow_updated,
    update_provider_when_message_created,
)

REACTIONS: tuple[ModuleType, ...] = (
    create_installed_app_when_app_created,
    create_site_record_when_app_created,
    invalidate_app_cache_when_app_changed,
    invalidate_apps_when_tenant_updated,
    invalidate_default_provider_when_provider_updated,
    record_model_usage_when_message_created,
    record_segment_hits_when_message_created,
    update_app_dataset_join_when_app_published_workflow_updated,
    update_provider_when_message_created,
)


def connect_handlers(resources: Callable[[], Resources]) -> Callable[[], None]:
    """Connect every reaction, each called with `resources=resources()` (the process's, looked
    up per call: a forked worker child has its own). Returns the function that disconnects
    them again."""
    connected: list[tuple[Any, Callable[..., None]]] = []
    for module in REACTIONS:
        handler = module.HANDLER

        def receiver(sender: Any, _handler: Any = handler, **kwargs: Any) -> None:
            _handler(sender, resources=resources(), **kwargs)

        receiver.__qualname__ = handler.__qualname__  # what a failure's log line names
        for signal in module.SIGNALS:
            signal.connect(receiver, weak=False)
            connected.append((signal, receiver))

    def disconnect() -> None:
        for signal, receiver in connected:
            signal.disconnect(receiver)

    return disconnect


__all__ = ["REACTIONS", "connect_handlers"]
