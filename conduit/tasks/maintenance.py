"""Tasks of the `maintenance` queue, run by beat."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from celery import shared_task

from conduit.core.runs.backends import build_run_backends
from conduit.db.models import utcnow
from conduit.infra.outbox import purge_finished
from conduit.services import human_input
from conduit.services.runs import take_over_dead_runs, tasks, workflow_store
from conduit.tasks.base import OutboxTask
from conduit.tasks.context import task_context

logger = logging.getLogger(__name__)


@shared_task(name="conduit.maintenance.purge_outbox", base=OutboxTask, bind=True)
def purge_outbox(self: OutboxTask) -> int:
    """Delete outbox rows that succeeded longer ago than the retention setting."""
    found = task_context(self).resources
    cutoff = utcnow() - timedelta(hours=found.settings.tasks.retention_hours)
    with found.db.transaction() as session:
        removed = purge_finished(session, older_than=cutoff)
    logger.info("purged %d finished outbox rows", removed)
    return removed


@shared_task(name="conduit.maintenance.reap_stale_runs", base=OutboxTask, bind=True)
def reap_stale_runs(self: OutboxTask) -> int:
    """Take over the runs whose executor is gone (lease lapsed); never a live one. Every
    distributed server does it every second: this is the backstop while none runs."""
    found = task_context(self).resources

    async def take_over() -> int:
        backends = build_run_backends(found.settings, worker=True)
        try:
            return await take_over_dead_runs(found.db, backends, found.settings)
        finally:
            await backends.aclose()

    return asyncio.run(take_over())


@shared_task(name="conduit.maintenance.resume_human_input_runs", base=OutboxTask, bind=True)
def resume_human_input_runs(self: OutboxTask) -> int:
    """Forms whose time ran out take their node's timeout branch; runs that waited past the
    longest wait end `stopped`; a paused run with an answered form resumes."""
    parts = task_context(self)

    async def sweep() -> int:
        shared = parts.backends is not None and parts.backends.shared
        backends = (
            parts.backends if shared else build_run_backends(parts.resources.settings, worker=True)
        )
        assert backends is not None
        try:
            found = parts.resources
            return await human_input.resume_due(found.db, found.settings, backends)
        finally:
            if not shared:
                await backends.aclose()

    return asyncio.run(sweep())


@shared_task(name="conduit.maintenance.purge_expired_tasks", base=OutboxTask, bind=True)
def purge_expired_tasks(self: OutboxTask) -> int:
    """Remove the async runs' tasks that ended longer ago than their retention (with their
    Idempotency-Keys and callback deliveries)."""
    found = task_context(self).resources
    removed = 0
    while True:  # in batches, each its own transaction
        with found.db.transaction() as session:
            batch = tasks.purge_expired_tasks(session, found.settings)
        removed += batch
        if batch < tasks.PURGE_BATCH:
            break
    with found.db.transaction() as session:
        tasks.purge_expired_deliveries(session, found.settings)
    if removed:
        logger.info("purged %d expired async task(s)", removed)
    return removed


@shared_task(name="conduit.maintenance.purge_workflow_runs", base=OutboxTask, bind=True)
def purge_workflow_runs(self: OutboxTask) -> int:
    """Remove the workflow runs that finished longer ago than the logs' retention
    (`CONDUIT_RUNS_LOG_RETENTION_DAYS`; 0 keeps them), with their node executions: in
    batches, each its own short transaction, so that live runs' writes never wait long."""
    found = task_context(self).resources
    horizon = workflow_store.logs_horizon(found.settings)
    if horizon is None:
        return 0
    removed, more = 0, True
    while more:
        with found.db.transaction() as session:
            batch, more = workflow_store.purge_finished_workflow_runs(
                session, finished_before=horizon
            )
        removed += batch
    if removed:
        logger.info("purged %d workflow run(s) past the logs' retention", removed)
    return removed
