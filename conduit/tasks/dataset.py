"""The `dataset` queue: indexing documents, and removing the files of deleted ones.

An indexing task works on one document for one slice (`services/datasets/indexing.py` says how
it cannot get stuck); its retries and continuations are outbox rows, never Celery retries.
"""

from __future__ import annotations

import logging

from celery import shared_task

from conduit.infra.storage import local_storage
from conduit.services import app_annotations
from conduit.services.datasets.documents import INDEX_TASK, REMOVE_FILE_TASK
from conduit.tasks.base import OutboxTask
from conduit.tasks.context import task_context

logger = logging.getLogger(__name__)


@shared_task(name=INDEX_TASK, base=OutboxTask, bind=True, autoretry_for=())
def index_document(self: OutboxTask, document_id: str, generation: int) -> str:
    outcome = task_context(self).indexer().run(document_id, generation)
    logger.info("document %s (generation %d): %s", document_id, generation, outcome)
    return outcome


@shared_task(name=REMOVE_FILE_TASK, base=OutboxTask, bind=True)
def remove_file(self: OutboxTask, key: str) -> None:
    """Remove a deleted document's stored file (idempotent: a missing file is fine)."""
    local_storage(task_context(self).resources.settings).delete(key)


@shared_task(name=app_annotations.REPLY_TASK, base=OutboxTask, bind=True, autoretry_for=())
def annotation_reply_job(self: OutboxTask, job_id: str) -> str:
    """Enable or disable an app's annotation reply (its end is on the job's row)."""
    context = task_context(self)
    return app_annotations.run_job(context.resources.db, context.indexer().embedders, job_id)


@shared_task(name=app_annotations.INDEX_TASK, base=OutboxTask, bind=True)
def index_annotations(self: OutboxTask, app_id: str) -> int:
    """Embed the app's annotations written or edited since its reply was switched on."""
    context = task_context(self)
    return app_annotations.index_annotations(
        context.resources.db, context.indexer().embedders, app_id
    )
