"""Tasks of the `ops` queue: durable follow-ups of console actions."""

from __future__ import annotations

import logging

from celery import shared_task

from conduit.services.apps import provision_app as provision_app_records
from conduit.tasks.base import OutboxTask
from conduit.tasks.context import task_context

logger = logging.getLogger(__name__)


@shared_task(name="conduit.ops.provision_app", base=OutboxTask, bind=True)
def provision_app(self: OutboxTask, app_id: str) -> bool:
    """Make sure a new app has its site and installed-app records (idempotent)."""
    with task_context(self).resources.db.transaction() as session:
        done = provision_app_records(session, app_id)
    logger.info("provisioned app %s (exists=%s)", app_id, done)
    return done
