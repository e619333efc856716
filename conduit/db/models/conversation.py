"""End users, conversations, messages and their feedback."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, IdMixin, TimestampMixin, utcnow


class EndUser(IdMixin, TimestampMixin, Base):
    """A caller's user of an app, keyed by the `user` string they send (Dify's `end_users`)."""

    __tablename__ = "end_users"
    __table_args__ = (UniqueConstraint("app_id", "type", "session_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32), default="service-api")
    session_id: Mapped[str] = mapped_column(String(255))
    external_user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    is_anonymous: Mapped[bool] = mapped_column(Boolean, default=False)


class Conversation(IdMixin, TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_app_end_user_updated", "app_id", "end_user_id", "updated_at"),
    )

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255), default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    introduction: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="normal")
    from_source: Mapped[str] = mapped_column(String(32), default="api")
    end_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("end_users.id", ondelete="SET NULL"), default=None
    )
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    dialogue_count: Mapped[int] = mapped_column(Integer, default=0)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class Message(IdMixin, TimestampMixin, Base):
    """One question and its answer; also the record of the run that produced the answer.

    A run started under an `Idempotency-Key` keeps the key and the hash of its request here
    (`services/runs/idempotency.py`), rather than in a table of its own: the key then lives
    exactly as long as the run's record (nothing to clean up or cascade), the INSERT that
    creates the run is the one whose unique index decides a race between two requests with
    the same key (the loser's whole start rolls back), and the record holds everything a
    repeat needs (task id, ids, status, stored answer) in one indexed lookup. A request
    without a key writes two NULLs, which the partial index leaves out.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        Index("ix_messages_app_created", "app_id", "created_at"),
        # The reaper's rows: only the runs still running (a handful), not the whole table.
        Index(
            "ix_messages_running",
            "created_at",
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        # One run per (app, end user, Idempotency-Key); only keyed runs are indexed.
        Index(
            "ux_messages_idempotency_key",
            "app_id",
            "end_user_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    conversation_id: Mapped[str | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), default=None
    )
    task_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    end_user_id: Mapped[str | None] = mapped_column(String(36), default=None)
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    from_source: Mapped[str] = mapped_column(String(32), default="api")
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    query: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="pending")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    model_provider: Mapped[str | None] = mapped_column(String(255), default=None)
    model_id: Mapped[str | None] = mapped_column(String(255), default=None)
    message_tokens: Mapped[int] = mapped_column(Integer, default=0)
    answer_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_price: Mapped[Decimal] = mapped_column(Numeric(12, 7), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    provider_response_latency: Mapped[float] = mapped_column(Float, default=0.0)
    message_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # An agent-chat run's rounds (Dify's `agent_thoughts`); SQL NULL for any other run.
    agent_thoughts: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql"),
        default=None,
    )
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # The run's lease: when its executor last said it is alive (None: not yet).
    renewed_at: Mapped[datetime | None] = mapped_column(default=None)
    # The request's Idempotency-Key, and the SHA-256 of the fields that define its run.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)


class MessageFeedback(IdMixin, TimestampMixin, Base):
    __tablename__ = "message_feedbacks"
    __table_args__ = (
        UniqueConstraint("message_id", "from_source", "from_end_user_id", "from_account_id"),
    )

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    rating: Mapped[str] = mapped_column(String(16))
    content: Mapped[str | None] = mapped_column(Text, default=None)
    from_source: Mapped[str] = mapped_column(String(16), default="user")
    from_end_user_id: Mapped[str | None] = mapped_column(String(36), default=None)
    from_account_id: Mapped[str | None] = mapped_column(String(36), default=None)


class UploadFile(IdMixin, Base):
    __tablename__ = "upload_files"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    storage_type: Mapped[str] = mapped_column(String(32), default="local")
    key: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    extension: Mapped[str] = mapped_column(String(32))
    mime_type: Mapped[str | None] = mapped_column(String(255), default=None)
    hash: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by_role: Mapped[str] = mapped_column(String(32), default="end_user")
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column()


class MessageFile(IdMixin, Base):
    """A file a message was sent with (Dify's `message_files`): an upload of the app
    (`upload_file_id`) or a URL the model is given (`remote_url`), in the order sent."""

    __tablename__ = "message_files"

    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))  # image | document | audio | video | custom
    transfer_method: Mapped[str] = mapped_column(String(32))  # local_file | remote_url
    url: Mapped[str | None] = mapped_column(Text, default=None)
    upload_file_id: Mapped[str | None] = mapped_column(
        ForeignKey("upload_files.id", ondelete="SET NULL"), default=None
    )
    belongs_to: Mapped[str] = mapped_column(String(32), default="user")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PinnedConversation(IdMixin, Base):
    """A conversation a web end user pinned to the top of their list (Dify's
    `pinned_conversations`)."""

    __tablename__ = "pinned_conversations"
    __table_args__ = (UniqueConstraint("conversation_id", "end_user_id"),)

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    end_user_id: Mapped[str] = mapped_column(ForeignKey("end_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SavedMessage(IdMixin, Base):
    """A completion a web end user saved (Dify's `saved_messages`)."""

    __tablename__ = "saved_messages"
    __table_args__ = (
        UniqueConstraint("message_id", "end_user_id"),
        Index("ix_saved_messages_app_end_user_created", "app_id", "end_user_id", "created_at"),
    )

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    end_user_id: Mapped[str] = mapped_column(ForeignKey("end_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
