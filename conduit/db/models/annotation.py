"""An app's annotations (Dify's `message_annotations`), the answers each gave (its hit history),
and the jobs that switch the app's annotation reply on and off or import annotations.
With the reply on, a chat whose question is close enough to an annotation's question is
answered with the annotation's answer, without the model. Each annotation keeps its question's
vector (`vector`: float32 bytes, a unit row) under the key of the model that made it
(`embedding_model_key`); a vector of another model is never compared.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, IdMixin, TimestampMixin, utcnow


class MessageAnnotation(IdMixin, TimestampMixin, Base):
    """`account_id`: who wrote it (the app's creator for one written with the app's key);
    `message_id` / `conversation_id`: the message it corrects, when written from one."""

    __tablename__ = "message_annotations"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[str | None] = mapped_column(String(36), default=None)
    message_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    account_id: Mapped[str | None] = mapped_column(String(36), default=None)
    embedding_model_key: Mapped[str | None] = mapped_column(String(255), default=None)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)


class AnnotationJob(IdMixin, Base):
    """One `enable` or `disable` of an app's annotation reply: `waiting` → `processing` →
    `completed` | `error` (`error` says why). An enable carries its settings. An `import` of
    annotations from a CSV file is written whole with its job, `completed`, `record_count` rows."""

    __tablename__ = "annotation_jobs"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    score_threshold: Mapped[float | None] = mapped_column(Float, default=None)
    embedding_provider: Mapped[str | None] = mapped_column(String(255), default=None)
    embedding_model: Mapped[str | None] = mapped_column(String(255), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    record_count: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AnnotationHitHistory(IdMixin, Base):
    """One answer an annotation gave (Dify's `app_annotation_hit_histories`): the message it
    answered, that message's `question`, how close it was (`score`), and the annotation's
    question and answer as they were then (an annotation edited later keeps its history)."""

    __tablename__ = "annotation_hit_histories"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    annotation_id: Mapped[str] = mapped_column(
        ForeignKey("message_annotations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(36))
    question: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    annotation_question: Mapped[str] = mapped_column(Text)
    annotation_content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
