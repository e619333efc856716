"""A workspace's custom API tools (Dify's "custom tool" providers): an OpenAPI 3 document of
the workspace's own service, its operations as parsed when it was saved, and the key sent with
each call (encrypted with the server's secret)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.base import Base, IdMixin, JsonType, utcnow


class ApiToolProvider(IdMixin, Base):
    __tablename__ = "api_tool_providers"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    icon: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    schema_type: Mapped[str] = mapped_column(String(32), default="openapi")
    schema: Mapped[str] = mapped_column(Text)
    server_url: Mapped[str] = mapped_column(Text)
    # The operations as `core/tools/openapi.py:ApiOperation.to_json` writes them.
    operations: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    # {auth_type: none | api_key, api_key_header, api_key_header_prefix}; the key apart.
    credentials: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    encrypted_api_key: Mapped[str | None] = mapped_column(Text, default=None)
    privacy_policy: Mapped[str] = mapped_column(Text, default="")
    custom_disclaimer: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
