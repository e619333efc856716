"""Webhook secrets and callback deliveries: the records, their transactions and the console's
views of them. Sending is `conduit/core/delivery`'s; the task making one attempt per execution
is `conduit/tasks/webhook.py`.

A delivery is a row written in the caller's transaction with the outbox row of its first
attempt. Each attempt is recorded, with what it decided (delivered, a retry — a new outbox row
due after the backoff, in the same transaction — or dead), before its task returns, so a
redelivered task message finds the attempt recorded and does nothing. Every query of the
console goes through `_readable()`, scoped to the caller's workspace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from conduit.core.delivery import AttemptResult, Outcome, RetryPolicy, decide
from conduit.db.models import (
    App,
    AppWebhookSecret,
    DeliveryStatus,
    Membership,
    Role,
    WebhookAttempt,
    WebhookDelivery,
    new_id,
    utcnow,
)
from conduit.errors import Conflict, InvalidParam, NotFound
from conduit.infra.outbox import enqueue
from conduit.infra.settings import WebhookSettings
from conduit.services import webhook_secrets
from conduit.services.apps import get_app, require_role
from conduit.services.webhook_secrets import SecretView, signing_secrets

ATTEMPT_TASK = "conduit.webhook.deliver"
DELIVERY_NOT_FOUND = "Webhook delivery not found."
_DELIVERIES = cast(Table, WebhookDelivery.__table__)
# A pending delivery whose next attempt is this much overdue may be redelivered (past any
# relay delay and task time limit).
STUCK_AFTER = timedelta(minutes=10)


def _timestamp(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


# --- secrets (the console's; the records are `webhook_secrets`') --------------------------


def read_secret(
    session: Session, *, member: Membership, app_id: str, server_secret: str
) -> SecretView:
    get_app(session, member.tenant_id, app_id)
    require_role(member, Role.EDITOR, "read webhook secrets")
    return webhook_secrets.current(session, app_id, server_secret=server_secret)


def rotate_secret(
    session: Session, *, member: Membership, app_id: str, server_secret: str, grace_seconds: float
) -> SecretView:
    get_app(session, member.tenant_id, app_id)
    require_role(member, Role.EDITOR, "rotate webhook secrets")
    return webhook_secrets.rotate(
        session, app_id, server_secret=server_secret, grace_seconds=grace_seconds
    )


# --- deliveries: what the run pipeline calls -----------------------------------------------


def encode_body(payload: dict[str, Any]) -> str:
    """The exact JSON every attempt sends (compact, UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def enqueue_callback(
    session: Session, *, app_id: str, task_id: str, url: str, payload: dict[str, Any]
) -> str:
    """Write the delivery of `task_id`'s callback and its first attempt's outbox row, in the
    caller's transaction; returns the delivery id. A second call for the same task returns
    the first one's id and writes nothing. (Core statements: this is on the path of every
    callback, in the transaction that stores its run's end.)"""
    now = utcnow()
    delivery_id = new_id()
    connection = session.connection()
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    written = connection.execute(
        dialect_insert(_DELIVERIES)
        .values(
            id=delivery_id,
            app_id=app_id,
            task_id=task_id,
            url=url,
            body=encode_body(payload),
            status=DeliveryStatus.PENDING,
            attempts=0,
            round_from=0,
            created_at=now,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing(index_elements=["task_id"])
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
        .returning(_DELIVERIES.c.id)
    ).scalar()
    if written is None:
        existing = session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.task_id == task_id)
        )
        assert existing is not None  # the conflict was on its task id
        return existing
    _enqueue_attempt(session, delivery_id, attempt=1, delay=0.0)
    return delivery_id


def _enqueue_attempt(session: Session, delivery_id: str, *, attempt: int, delay: float) -> None:
    enqueue(
        session,
        ATTEMPT_TASK,
        queue="webhook",
        kwargs={"delivery_id": delivery_id, "attempt": attempt},
        delay=delay,
    )


def _schedule(session: Session, delivery: WebhookDelivery, *, attempt: int, delay: float) -> None:
    _enqueue_attempt(session, delivery.id, attempt=attempt, delay=delay)
    delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)


def callback_summary(session: Session, task_id: str) -> dict[str, Any] | None:
    """The task status endpoint's `callback` (unix seconds), or None without a callback."""
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.task_id == task_id)
    ).first()
    if delivery is None:
        return None
    return {
        "url": delivery.url,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "delivered_at": _timestamp(delivery.delivered_at),
    }


def purge_deliveries(session: Session, *, created_before: datetime) -> int:
    """Delete finished deliveries (delivered or dead) created before `created_before`, with
    their attempts; pending ones are still at work and stay."""
    result = session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.created_at < created_before)
        .where(WebhookDelivery.status != DeliveryStatus.PENDING)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- one attempt (the webhook task) --------------------------------------------------------


@dataclass(frozen=True)
class PlannedAttempt:
    delivery_id: str
    number: int
    url: str
    body: bytes
    secrets: list[str]


def retry_policy(settings: WebhookSettings) -> RetryPolicy:
    return RetryPolicy(
        retries=settings.retries,
        base=settings.backoff_base,
        max_delay=settings.backoff_max,
        retry_after_max=settings.retry_after_max,
    )


def _due(delivery: WebhookDelivery | None, attempt: int) -> bool:
    """This attempt is the next one of a pending delivery (else it ran, or nothing is due)."""
    return (
        delivery is not None
        and delivery.status == DeliveryStatus.PENDING
        and delivery.attempts == attempt - 1
    )


def begin_attempt(
    session: Session, *, delivery_id: str, attempt: int, server_secret: str
) -> PlannedAttempt | None:
    """What attempt `attempt` sends, or None when it is not due (a task message delivered
    twice, a delivery delivered, dead or purged meanwhile)."""
    # The delivery and its app's secret in one query (on the path of every callback).
    found = session.execute(
        select(WebhookDelivery, AppWebhookSecret)
        .outerjoin(AppWebhookSecret, AppWebhookSecret.app_id == WebhookDelivery.app_id)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    delivery = found[0] if found is not None else None
    if delivery is None or not _due(delivery, attempt):
        return None
    secrets = signing_secrets(session, delivery.app_id, server_secret=server_secret)
    return PlannedAttempt(delivery.id, attempt, delivery.url, delivery.body.encode(), secrets)


def record_attempt(
    session: Session, planned: PlannedAttempt, result: AttemptResult, policy: RetryPolicy
) -> Outcome | None:
    """Record the attempt and what follows it (a retry is scheduled in this transaction);
    None when another execution of the same attempt recorded it first."""
    delivery = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id == planned.delivery_id).with_for_update()
    ).first()
    if delivery is None or not _due(delivery, planned.number):
        return None
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=planned.number,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
        )
    )
    delivery.attempts = planned.number
    delivery.last_status = result.status_code
    delivery.last_error = result.error
    decision = decide(
        policy,
        status_code=result.status_code,
        retry_after_header=result.retry_after,
        attempt_in_round=planned.number - delivery.round_from,
        permanent_error=result.permanent,
    )
    now = utcnow()
    if decision.outcome == Outcome.DELIVERED:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif decision.outcome == Outcome.RETRY:
        _schedule(session, delivery, attempt=planned.number + 1, delay=decision.delay)
    else:
        delivery.status = DeliveryStatus.DEAD
        delivery.dead_at = now
        delivery.next_attempt_at = None
    return decision.outcome


# --- the console: dead letters and the rest ------------------------------------------------


def _readable(tenant_id: str, app_id: str) -> Select[WebhookDelivery]:
    """The only way to select deliveries: one app's, in the caller's workspace."""
    return (
        select(WebhookDelivery)
        .join(App, App.id == WebhookDelivery.app_id)
        .where(App.tenant_id == tenant_id, WebhookDelivery.app_id == app_id)
    )


def parse_status(value: str | None) -> DeliveryStatus | None:
    if value in (None, "", "all"):
        return None
    try:
        return DeliveryStatus(value)
    except ValueError:
        allowed = ", ".join(status.value for status in DeliveryStatus)
        raise InvalidParam(f"status: must be one of {allowed}") from None


def list_deliveries(
    session: Session,
    *,
    member: Membership,
    app_id: str,
    status: DeliveryStatus | None,
    page: int,
    limit: int,
) -> tuple[list[WebhookDelivery], int]:
    get_app(session, member.tenant_id, app_id)
    query = _readable(member.tenant_id, app_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .offset((page - 1) * limit)
        .limit(limit)
    )
    return list(rows), int(total)


def _held(session: Session, member: Membership, app_id: str, delivery_id: str) -> WebhookDelivery:
    get_app(session, member.tenant_id, app_id)
    delivery = session.scalars(
        _readable(member.tenant_id, app_id).where(WebhookDelivery.id == delivery_id)
    ).first()
    if delivery is None:
        raise NotFound(DELIVERY_NOT_FOUND)
    return delivery


def get_delivery(
    session: Session, *, member: Membership, app_id: str, delivery_id: str
) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    delivery = _held(session, member, app_id, delivery_id)
    attempts = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery.id)
        .order_by(WebhookAttempt.number)
    )
    return delivery, list(attempts)


def _stuck(delivery: WebhookDelivery) -> bool:
    """A pending delivery whose next attempt is long overdue: its task failed for a reason of
    its own (say, the database was gone when it recorded), so nothing will send it again."""
    due = delivery.next_attempt_at
    return due is None or due < utcnow() - STUCK_AFTER


def redeliver(
    session: Session, *, member: Membership, app_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send a dead or delivered callback again (or a pending one long overdue), with the same
    event id and a fresh retry budget."""
    require_role(member, Role.EDITOR, "redeliver webhooks")
    held = _held(session, member, app_id, delivery_id)
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == held.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if delivery.status == DeliveryStatus.PENDING and not _stuck(delivery):
        raise Conflict("The delivery is pending: its next attempt is already scheduled.")
    delivery.status = DeliveryStatus.PENDING
    delivery.round_from = delivery.attempts
    delivery.delivered_at = None
    delivery.dead_at = None
    _schedule(session, delivery, attempt=delivery.attempts + 1, delay=0.0)
    session.flush()
    return delivery


def display(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "task_id": delivery.task_id,
        "url": delivery.url,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": _timestamp(delivery.created_at),
        "next_attempt_at": _timestamp(delivery.next_attempt_at),
        "delivered_at": _timestamp(delivery.delivered_at),
        "dead_at": _timestamp(delivery.dead_at),
    }


def display_detail(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict[str, Any]:
    """A delivery with what it sends and every attempt."""
    return {
        **display(delivery),
        "payload": json.loads(delivery.body),
        "history": [
            {
                "number": attempt.number,
                "started_at": _timestamp(attempt.started_at),
                "duration_ms": attempt.duration_ms,
                "status_code": attempt.status_code,
                "error": attempt.error,
            }
            for attempt in attempts
        ],
    }
