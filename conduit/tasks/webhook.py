"""The `webhook` queue: one attempt of a callback per task execution.

The attempt is read in one transaction, sent outside any, and recorded in a second one with
what follows (delivered, dead, or the next attempt's outbox row due after the backoff) before
the task returns and its message is acknowledged. Retries are outbox rows, not Celery retries
or ETA messages: a Redis broker hands an unacknowledged ETA message to another worker after its
visibility timeout, and a row survives any broker. A message delivered twice finds its attempt
recorded (`begin_attempt` → None) and does nothing; the same event id goes with every attempt.
"""

from __future__ import annotations

import logging

from celery import shared_task

from conduit.core.delivery import send_signed
from conduit.infra import metrics
from conduit.infra.ssrf import AllowList
from conduit.services import webhooks
from conduit.tasks.base import OutboxTask
from conduit.tasks.context import task_context

logger = logging.getLogger(__name__)


@shared_task(name=webhooks.ATTEMPT_TASK, base=OutboxTask, bind=True)
def deliver(self: OutboxTask, delivery_id: str, attempt: int) -> str | None:
    """Make attempt `attempt` of a delivery; returns its outcome, or None when not due."""
    found = task_context(self).resources
    settings = found.settings
    with found.db.transaction() as session:
        planned = webhooks.begin_attempt(
            session, delivery_id=delivery_id, attempt=attempt, server_secret=settings.secret_key()
        )
    if planned is None:
        logger.info("webhook %s: attempt %d is not due; nothing to do", delivery_id, attempt)
        return None
    result = send_signed(
        planned.url,
        body=planned.body,
        msg_id=planned.delivery_id,
        secrets=planned.secrets,
        allow=AllowList.of(settings.webhook),
        timeout=settings.webhook.timeout,
    )
    with found.db.transaction() as session:
        outcome = webhooks.record_attempt(
            session, planned, result, webhooks.retry_policy(settings.webhook)
        )
    if outcome is None:
        logger.info("webhook %s: attempt %d was recorded by another run", delivery_id, attempt)
        return None
    metrics.WEBHOOK_ATTEMPTS.labels(outcome=outcome.value).inc()
    logger.info(
        "webhook %s: attempt %d → %s (%s)",
        delivery_id,
        attempt,
        outcome.value,
        result.status_code if result.status_code is not None else result.error,
    )
    return outcome.value
