"""Signed callbacks: each app's webhook secret, and every delivery with its attempts."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.account import _enum
from conduit.db.models.base import Base, IdMixin, new_id, utcnow


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # an attempt is due (or running)
    DELIVERED = "delivered"  # a 2xx was recorded
    DEAD = "dead"  # retries exhausted, or refused for good: a dead letter


class AppWebhookSecret(Base):
    """An app's signing secret (`whsec_…`), encrypted with the server secret. After a rotation
    the previous one stays valid until `previous_valid_until`: deliveries are signed with both."""

    __tablename__ = "app_webhook_secrets"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    encrypted_secret: Mapped[str] = mapped_column(Text)
    encrypted_previous_secret: Mapped[str | None] = mapped_column(Text, default=None)
    previous_valid_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    """One callback of one task. Its id is the event id every attempt sends as `webhook-id`,
    and `body` is the exact JSON sent, so every attempt signs identical bytes."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_app_status_created", "app_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    # No foreign key: the run's task may be kept for less time than its delivery record.
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts made before the current round: a redelivery starts a round with a fresh budget.
    round_from: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    dead_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookAttempt(IdMixin, Base):
    """One POST of a delivery: when, how long, and what came back (a status or an error)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "number"),)

    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
