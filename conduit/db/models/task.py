"""Async runs' tasks (`response_mode: "async"`): what `GET /v1/tasks/{task_id}` answers from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base


class AsyncTask(Base):
    """An async run's task: whose it is (app, end user), which run record holds its result
    (`record_id`: a chat or completion run's message), where its callback goes, and its
    status as a poller sees it: `pending` until a worker claims the run, `running`, then the
    run's end (`succeeded`, `failed`, `stopped`). Written in the start's transaction, claimed
    and ended in the run's own writes; removed `CONDUIT_RUNS_ASYNC_RETENTION_HOURS` after its
    end. Its id is the run's task id, time-ordered (UUIDv7), so that a status request for an
    id that is gone can tell an expired task from one that never was."""

    __tablename__ = "async_tasks"
    __table_args__ = (
        # The retention's and the stale-task gauge's rows.
        Index("ix_async_tasks_finished", "finished_at"),
        Index("ix_async_tasks_status_created", "status", "created_at"),
        # A workflow run's task by its run (a run resumed after a pause runs under new ids).
        Index("ix_async_tasks_record", "record_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    end_user_id: Mapped[str] = mapped_column(ForeignKey("end_users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    callback_url: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
