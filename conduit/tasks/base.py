"""The base of every Conduit task: it keeps the task's outbox row true.

Before the body runs, the row moves to `running` (run_count + 1); a row that already finished
means this is a duplicate delivery, and the body is skipped. On success the row is `succeeded`;
a fatal error marks it `failed` with the error; a retryable error is retried by Celery with
backoff and jitter and the row stays `running`.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from celery import Task
from celery.exceptions import Retry
from sqlalchemy import Table, select, update

from conduit.db.models import OutboxMessage, OutboxStatus, utcnow
from conduit.tasks.context import task_context

logger = logging.getLogger(__name__)

# Errors worth another try: the network and the database going away for a moment.
RETRYABLE: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_DONE = (OutboxStatus.SUCCEEDED, OutboxStatus.FAILED)


class OutboxTask(Task):  # type: ignore[misc]
    abstract = True
    autoretry_for = RETRYABLE
    retry_backoff = True
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 5

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outbox_id = self._outbox_id()
        if outbox_id and not self._claim(outbox_id):
            logger.info(
                "task %s: outbox row %s already finished; duplicate skipped", self.name, outbox_id
            )
            return None
        try:
            result = super().__call__(*args, **kwargs)
        except Retry:
            raise  # Celery retries it; the row stays `running` until a run ends
        except RETRYABLE as error:
            # Reaching here means autoretry gave up (retries exhausted): the row fails for good.
            if outbox_id:
                self._finish(outbox_id, OutboxStatus.FAILED, f"retries exhausted: {error!r}")
            raise
        except Exception as error:
            if outbox_id:
                self._finish(outbox_id, OutboxStatus.FAILED, f"{type(error).__name__}: {error}")
            raise
        if outbox_id:
            self._finish(outbox_id, OutboxStatus.SUCCEEDED, None)
        return result

    def _outbox_id(self) -> str | None:
        request = self.request
        if request is None:
            return None
        # A worker exposes custom headers as request attributes; an eager `apply()` only
        # under `request.headers`.
        found = request.get("outbox_id") or (getattr(request, "headers", None) or {}).get(
            "outbox_id"
        )
        return str(found) if found else None

    def _claim(self, outbox_id: str) -> bool:
        # One self-committing statement (each task pays it, on the path of every run and
        # callback); the row is read again only when the claim found nothing to claim.
        with task_context(self).resources.db.statements() as connection:
            claimed = connection.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == outbox_id, _OUTBOX.c.status.not_in(_DONE))
                .values(
                    status=OutboxStatus.RUNNING,
                    started_at=utcnow(),
                    run_count=_OUTBOX.c.run_count + 1,
                )
                .returning(_OUTBOX.c.id)
            ).first()
            if claimed is not None:
                return True
            found = connection.execute(
                select(_OUTBOX.c.id).where(_OUTBOX.c.id == outbox_id)
            ).first()
            # No row: sent without one (e.g. by beat), nothing to track; else it finished.
            return found is None

    def _finish(self, outbox_id: str, status: OutboxStatus, error: str | None) -> None:
        with task_context(self).resources.db.statements() as connection:
            connection.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id == outbox_id)
                .values(
                    status=status,
                    finished_at=utcnow(),
                    last_error=error[:2000] if error else None,
                )
            )
