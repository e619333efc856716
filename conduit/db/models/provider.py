"""Model providers a workspace configured itself (endpoint, encrypted API key, model names)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, IdMixin, JsonType, TimestampMixin


class ProviderCredential(IdMixin, TimestampMixin, Base):
    """One configured endpoint of a provider type in a workspace. The API key is stored only
    encrypted (`conduit.infra.crypto`); routes show it masked. `quota_used` counts the tokens of
    the messages it served; a run is refused once it reaches `quota_limit` (None: unlimited)."""

    __tablename__ = "provider_credentials"
    __table_args__ = (UniqueConstraint("tenant_id", "provider", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(64))  # e.g. "openai_api_compatible"
    name: Mapped[str] = mapped_column(String(255))  # a label, unique per tenant + provider
    base_url: Mapped[str] = mapped_column(String(2048))
    encrypted_api_key: Mapped[str | None] = mapped_column(Text, default=None)
    models: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # What it serves at `POST {base_url}/embeddings`: the models a dataset may embed with.
    embedding_models: Mapped[list[str]] = mapped_column(
        JsonType, default=list, server_default=text("'[]'")
    )
    # What it serves at `POST {base_url}/rerank`: the models a dataset's search may rerank with.
    rerank_models: Mapped[list[str]] = mapped_column(
        JsonType, default=list, server_default=text("'[]'")
    )
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_limit: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quota_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
