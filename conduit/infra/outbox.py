"""The transactional outbox: Celery work is a row written in the use case's own transaction.

`enqueue()` adds the row and, after the commit, nudges the relay. `OutboxRelay` (a thread in every
server process) hands pending rows to the broker and marks them dispatched; a row whose send
failed (broker down) stays pending and is retried with backoff until it is delivered. The row id
is the Celery task id, and the task wrapper (`conduit.tasks.base`) records running / succeeded /
failed on the row, so a duplicate delivery of a finished task is recognised and skipped.

Recovery: `recover_unfinished()` (embedded mode, at start) puts every unfinished row back to
pending. Distributed: `resend_lost()` puts back, within a sweep of noticing it, the dispatched
rows a broker lost (a Redis broker restarted empty: its `BrokerWatch` says it lost messages, and
which of the dispatched, never started tasks it still holds); `redeliver_stale()` re-sends rows
the broker should have run long ago (the last resort, for losses nobody noticed).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Row, Table, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from conduit.db.models import OutboxMessage, OutboxStatus, new_id, utcnow
from conduit.infra.db import Database, after_commit
from conduit.infra.tracing import current_request_id

logger = logging.getLogger(__name__)

NOTIFY_KEY = "conduit_outbox_notify"

# (task name, kwargs, queue, task id, headers) -> None; raises when the broker refuses.
Send = Callable[[str, dict[str, Any], str, str, dict[str, Any]], None]


@dataclass(frozen=True)
class PublishBatch:
    """One relay sweep's sends. `atomic`: the sends are buffered and go to the broker together
    when the batch ends (one pipelined round trip on a Redis broker), so a failure, at a send
    or at that end, means none of them is known to be delivered; otherwise each send is
    delivered when it returns (RabbitMQ, the embedded broker)."""

    send: Send
    atomic: bool


class Publisher(Protocol):
    """What the relay hands rows to: a broker's publishing, one message or a batch."""

    def __call__(
        self, task: str, kwargs: dict[str, Any], queue: str, task_id: str, headers: dict[str, Any]
    ) -> None: ...

    def batch(self, size: int) -> AbstractContextManager[PublishBatch]:
        """Sends of up to `size` messages, flushed when the block ends (it raises then when
        the broker refused them)."""
        ...


UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.DISPATCHED, OutboxStatus.RUNNING)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_INSERT_OUTBOX = insert(_OUTBOX)
# Rows put back per statement after a broker lost its messages.
_RESEND_CHUNK = 500


class BrokerWatch(Protocol):
    """What the relay asks a broker that can lose the messages it holds (a Redis broker
    restarted without its data). Both may raise while the broker does not answer."""

    def lost_messages(self) -> bool:
        """True when the broker may have lost messages since this watch last looked (it was
        restarted, or its data is gone); the first look counts only a broker found empty."""
        ...

    def holds(self, tasks: Sequence[tuple[str, str]]) -> set[str]:
        """Of these (task id, queue) pairs, the ids whose message the broker still holds
        (queued, or delivered to a worker and not yet acknowledged)."""
        ...


def enqueue(
    session: Session,
    task: str,
    *,
    queue: str,
    kwargs: dict[str, Any] | None = None,
    delay: float = 0.0,
) -> str:
    """Write a task to the outbox inside the caller's transaction (a Core INSERT: no ORM
    object to flush, it is on the path of every queued run); it is sent after commit. Returns
    the row's id, the Celery task id."""
    now = utcnow()
    row_id = new_id()
    session.connection().execute(
        _INSERT_OUTBOX,
        {
            "id": row_id,
            "task": task,
            "queue": queue,
            "kwargs": kwargs or {},
            "headers": {"request_id": current_request_id()},
            "status": OutboxStatus.PENDING,
            "created_at": now,
            "available_at": now + timedelta(seconds=delay),
        },
    )
    notify: Callable[[], None] | None = session.info.get(NOTIFY_KEY)
    if notify is not None and delay <= 0:
        after_commit(session, notify)
    return row_id


@dataclass(frozen=True)
class RelayPolicy:
    interval: float = 1.0
    # A sweep follows the last one by at least this long: under load every commit nudges the
    # relay, and the commits of the gap go out together in one sweep (one transaction and one
    # publish round trip) instead of a sweep each; an idle relay sends at once.
    gather: float = 0.0
    batch: int = 200
    base_backoff: float = 0.5
    # A broker that was down gets the rows that waited for it within ~2 s of its return (each
    # sweep tries the first due row only, so an outage costs one failed send per sweep).
    max_backoff: float = 2.0
    max_attempts: int = 0  # 0: retry forever
    # Distributed only: re-send a dispatched row the broker has not started after this long,
    # and a running row whose worker must be dead (past the hard time limit).
    redeliver_dispatched_after: float | None = None
    redeliver_running_after: float | None = None

    def backoff(self, attempts: int) -> float:
        ceiling = min(self.max_backoff, self.base_backoff * (2 ** max(0, attempts - 1)))
        return random.uniform(ceiling / 2, ceiling)  # full jitter on the upper half


class OutboxRelay:
    """Sends pending outbox rows to the broker from a background thread."""

    def __init__(
        self,
        db: Database,
        publish: Publisher,
        policy: RelayPolicy,
        watch: BrokerWatch | None = None,
    ) -> None:
        self._db = db
        self._publish = publish
        self._policy = policy
        self._watch = watch
        # When a loss was noticed and its rows are not yet put back (a failed check is retried).
        self._loss_noticed_at: datetime | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._locking = db.dialect == "postgresql"

    def nudge(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        checks_due = 0.0
        swept = -self._policy.gather
        while not self._stopping.is_set():
            self._wake.wait(self._policy.interval)
            gap = swept + self._policy.gather - time.monotonic()
            if gap > 0 and self._stopping.wait(gap):
                break
            self._wake.clear()
            if self._stopping.is_set():
                break
            swept = time.monotonic()
            try:
                # What a commit nudged for goes out first; the looks for what the broker lost
                # (a broker round trip or two) and for stale rows (a statement) are safety
                # nets, made once per interval rather than on every nudge: on a busy server
                # every start nudges.
                self._relay_all()
                now = time.monotonic()
                if now >= checks_due:
                    checks_due = now + self._policy.interval
                    if self.resend_lost():
                        self._relay_all()
                    self.redeliver_stale()
            except Exception:
                logger.exception("outbox relay sweep failed")

    def _relay_all(self) -> None:
        while self.relay_once() >= self._policy.batch:
            pass

    def relay_once(self) -> int:
        """Send one batch of due rows; returns how many rows were looked at.

        Core statements, no ORM rows: under a steady load every commit nudges the relay, so a
        sweep carries a row or two and its own cost is per run. The due rows are claimed
        (`dispatched`) and read in one `UPDATE … RETURNING`, sent, and the commit ends the
        sweep; rows the broker refused are put back in the same transaction first. (Their
        locks are held to the commit: a worker that receives a message before it waits for
        the row, as it did when the rows were read `FOR UPDATE`.)"""
        now = utcnow()
        due = (
            select(_OUTBOX.c.id)
            .where(_OUTBOX.c.status == OutboxStatus.PENDING)
            .where(_OUTBOX.c.available_at <= now)
            .order_by(_OUTBOX.c.created_at)
            .limit(self._policy.batch)
        )
        if self._locking:
            due = due.with_for_update(skip_locked=True)
        claim = (
            update(_OUTBOX)
            .where(_OUTBOX.c.id.in_(due.scalar_subquery()))
            .values(status=OutboxStatus.DISPATCHED, dispatched_at=now, last_error=None)
            .returning(
                _OUTBOX.c.id,
                _OUTBOX.c.task,
                _OUTBOX.c.queue,
                _OUTBOX.c.kwargs,
                _OUTBOX.c.headers,
                _OUTBOX.c.send_attempts,
                _OUTBOX.c.created_at,
            )
        )
        with self._db.transaction() as session:
            connection = session.connection()
            # RETURNING keeps no order: the oldest row goes first, as it was written.
            rows = sorted(connection.execute(claim).all(), key=lambda row: row.created_at)
            if not rows:
                return 0
            sent, atomic = 0, True
            try:
                with self._publish.batch(len(rows)) as batch:
                    atomic = batch.atomic
                    for row in rows:
                        headers = dict(row.headers or {})
                        headers["outbox_id"] = row.id
                        batch.send(row.task, dict(row.kwargs or {}), row.queue, row.id, headers)
                        sent += 1
            except Exception as error:
                # The broker refused: a batched send delivered none of the rows (or none
                # knowably: they are sent again, and a duplicate is recognised by its row id);
                # one at a time, those before the refused one went out. The rest of the sweep
                # would wait on the broker too: they are put back with the refused row, due
                # when it is, instead of holding this transaction open for each.
                delivered = 0 if atomic else sent
                self._put_back(connection, rows[delivered:], error)
                return delivered + 1
        return len(rows)

    def _put_back(self, connection: Connection, rows: Sequence[Row[Any]], error: Exception) -> None:
        """The broker refused `rows[0]` (and the rest waited on it): pending again after a
        backoff, or the first given up after the most attempts the policy allows."""
        refused = rows[0]
        attempts = refused.send_attempts + 1
        last_error = f"send failed: {error}"[:2000]
        due = utcnow() + timedelta(seconds=self._policy.backoff(attempts))
        pending: dict[str, Any] = {
            "status": OutboxStatus.PENDING,
            "dispatched_at": None,
            "available_at": due,
        }
        if self._policy.max_attempts and attempts >= self._policy.max_attempts:
            first = {"status": OutboxStatus.FAILED, "finished_at": utcnow(), "dispatched_at": None}
            logger.error(
                "outbox %s (%s): giving up after %d sends", refused.id, refused.task, attempts
            )
        else:
            first = pending
            logger.warning(
                "outbox %s (%s): broker refused (attempt %d), will retry: %s",
                refused.id,
                refused.task,
                attempts,
                error,
            )
        connection.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == refused.id)
            .values(send_attempts=attempts, last_error=last_error, **first)
        )
        later = [row.id for row in rows[1:]]
        if later:
            connection.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(later)).values(**pending))

    def resend_lost(self) -> int:
        """When the broker lost its messages: put the dispatched, never started rows it no
        longer holds back to pending (sent by this sweep); returns how many. A row dispatched
        after the loss is held by the broker, so it is not sent twice."""
        if self._watch is None:
            return 0
        try:
            if self._loss_noticed_at is None:
                if not self._watch.lost_messages():
                    return 0
                self._loss_noticed_at = utcnow()
            count = self._put_back_lost(self._watch, self._loss_noticed_at)
        except Exception as error:
            # The broker does not answer: relay_once() says so for every row it cannot send.
            logger.debug("outbox: cannot look at the broker's messages: %s", error)
            return 0
        self._loss_noticed_at = None
        if count:
            logger.warning("outbox: the broker lost %d task(s); they are sent again", count)
        return count

    def _put_back_lost(self, watch: BrokerWatch, noticed_at: datetime) -> int:
        with self._db.transaction() as session:
            dispatched = [
                (str(task_id), str(queue))
                for task_id, queue in session.execute(
                    select(OutboxMessage.id, OutboxMessage.queue)
                    .where(OutboxMessage.status == OutboxStatus.DISPATCHED)
                    .where(OutboxMessage.dispatched_at < noticed_at)
                )
            ]
            if not dispatched:
                return 0
            held = watch.holds(dispatched)
            lost = [task_id for task_id, _ in dispatched if task_id not in held]
            count = 0
            now = utcnow()
            for start in range(0, len(lost), _RESEND_CHUNK):
                result = session.execute(
                    update(OutboxMessage)
                    # Still dispatched before the loss: a row a worker started meanwhile, or
                    # that another server already sent again, is left alone.
                    .where(OutboxMessage.id.in_(lost[start : start + _RESEND_CHUNK]))
                    .where(OutboxMessage.status == OutboxStatus.DISPATCHED)
                    .where(OutboxMessage.dispatched_at < noticed_at)
                    .values(status=OutboxStatus.PENDING, available_at=now)
                )
                count += int(getattr(result, "rowcount", 0) or 0)
        return count

    def redeliver_stale(self) -> int:
        """Put rows the broker lost back to pending (distributed mode); returns how many."""
        policy = self._policy
        if policy.redeliver_dispatched_after is None or policy.redeliver_running_after is None:
            return 0
        now = utcnow()
        dispatched_cutoff = now - timedelta(seconds=policy.redeliver_dispatched_after)
        running_cutoff = now - timedelta(seconds=policy.redeliver_running_after)
        with self._db.transaction() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(
                    or_(
                        (OutboxMessage.status == OutboxStatus.DISPATCHED)
                        & (OutboxMessage.dispatched_at < dispatched_cutoff),
                        (OutboxMessage.status == OutboxStatus.RUNNING)
                        & (OutboxMessage.started_at < running_cutoff),
                    )
                )
                .values(status=OutboxStatus.PENDING, available_at=now)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            logger.warning("outbox: %d stale task(s) put back for redelivery", count)
        return count


def recover_unfinished(db: Database) -> int:
    """At an embedded server's start: every unfinished row runs again (tasks are idempotent)."""
    with db.transaction() as session:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status.in_([OutboxStatus.DISPATCHED, OutboxStatus.RUNNING]))
            .values(status=OutboxStatus.PENDING, available_at=utcnow())
        )
        count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        logger.warning("outbox: %d task(s) unfinished by the last process will run again", count)
    return count


def purge_finished(session: Session, *, older_than: datetime) -> int:
    """Delete succeeded rows finished before `older_than`; failed rows are kept for inspection."""
    result = session.execute(
        delete(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.SUCCEEDED)
        .where(OutboxMessage.finished_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def waiting_by_queue(session: Session, *, stale_before: datetime) -> dict[str, tuple[int, int]]:
    """Per queue, the tasks written and not yet started by a worker (pending, or handed to the
    broker), and how many of them were written before `stale_before`: the depth of each queue
    as the outbox knows it, whatever the broker."""
    waiting = (OutboxStatus.PENDING, OutboxStatus.DISPATCHED)
    rows = session.execute(
        select(
            OutboxMessage.queue,
            func.count(),
            func.count().filter(OutboxMessage.created_at < stale_before),
        )
        .where(OutboxMessage.status.in_(waiting))
        .group_by(OutboxMessage.queue)
    )
    return {str(queue): (int(total), int(stale)) for queue, total, stale in rows}
