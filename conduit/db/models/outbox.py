"""The transactional outbox: Celery work written in the use case's own transaction."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.account import _enum
from conduit.db.models.base import Base, IdMixin


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # written, not yet handed to the broker
    DISPATCHED = "dispatched"  # handed to the broker
    RUNNING = "running"  # a worker started it
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed for good; `last_error` says why


class OutboxMessage(IdMixin, Base):
    """A task to run; its id is the Celery task id, so a redelivery is recognised."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_available", "status", "available_at"),)

    task: Mapped[str] = mapped_column(String(255))
    queue: Mapped[str] = mapped_column(String(64))
    kwargs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    send_attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column()
    available_at: Mapped[datetime] = mapped_column()
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
