"""The embedding cache: a vector per model and text, so that indexing unchanged text again (a
re-index, a re-upload, the same paragraph in two documents) costs no model call."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, utcnow


class CachedEmbedding(Base):
    """`model_key` names the model and its exact weights (`Embedder.model_key`), so a changed
    model never reads another's vectors; `content_hash` is the SHA-256 of the text; `vector`
    is its float32 bytes, `dimension` long."""

    __tablename__ = "embedding_cache"

    model_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dimension: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
