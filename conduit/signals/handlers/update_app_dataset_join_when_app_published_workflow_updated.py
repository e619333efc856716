"""app-published-workflow-was-updated → the app's dataset joins: the datasets the
knowledge-retrieval nodes of its latest published workflow name (idempotent: read again from
the database, whatever version the signal carried)."""

from __future__ import annotations

from typing import Any

from conduit.db.models import App
from conduit.infra.resources import Resources
from conduit.services.apps import sync_dataset_joins_of
from conduit.signals.signals import app_published_workflow_was_updated


def update_app_dataset_join(app: App, *, resources: Resources, **_: Any) -> None:
    with resources.db.transaction() as session:
        sync_dataset_joins_of(session, app.id)


SIGNALS = (app_published_workflow_was_updated,)
HANDLER = update_app_dataset_join
