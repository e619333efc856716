"""Blinker signals, named `resource-action-past-tense`; the sender is the main object.

Services never call `.send()`: they call `send_after_commit()`, which buffers the signal in the
unit of work, sends it after the commit and drops it on rollback. Each receiver runs isolated: a
failing handler is logged with the request id and the others still run.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace
from sqlalchemy.orm import Session

from conduit.infra.db import after_commit

logger = logging.getLogger(__name__)
_signals = Namespace()

app_was_created = _signals.signal("app-was-created")
app_was_updated = _signals.signal("app-was-updated")
app_was_deleted = _signals.signal("app-was-deleted")
app_model_config_was_updated = _signals.signal("app-model-config-was-updated")
tenant_was_created = _signals.signal("tenant-was-created")
tenant_was_updated = _signals.signal("tenant-was-updated")
message_was_created = _signals.signal("message-was-created")
# Sent when a workspace model provider is created, changed or deleted.
model_provider_was_updated = _signals.signal("model-provider-was-updated")
dataset_was_deleted = _signals.signal("dataset-was-deleted")
document_was_deleted = _signals.signal("document-was-deleted")
document_index_created = _signals.signal("document-index-created")
app_draft_workflow_was_synced = _signals.signal("app-draft-workflow-was-synced")
app_published_workflow_was_updated = _signals.signal("app-published-workflow-was-updated")


def send_isolated(signal: NamedSignal, sender: Any, **kwargs: Any) -> int:
    """Call every receiver; log (not raise) each failure. Returns how many failed."""
    failures = 0
    for receiver in list(signal.receivers_for(sender)):
        try:
            receiver(sender, **kwargs)
        except Exception:
            failures += 1
            logger.exception("signal %s: handler %r failed", signal.name, receiver)
    return failures


def send_after_commit(session: Session, signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Buffer the signal in the session's unit of work; it goes out after the commit."""

    def release() -> None:
        send_isolated(signal, sender, **kwargs)

    after_commit(session, release)
