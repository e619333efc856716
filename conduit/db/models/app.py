"""Apps and what hangs off them: sites, installed apps, API tokens."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from conduit.db.models.account import _enum
from conduit.db.models.base import Base, IdMixin, TimestampMixin


class AppMode(enum.StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    AGENT_CHAT = "agent-chat"
    WORKFLOW = "workflow"
    ADVANCED_CHAT = "advanced-chat"


class AppStatus(enum.StrEnum):
    NORMAL = "normal"
    ABNORMAL = "abnormal"


class IconType(enum.StrEnum):
    EMOJI = "emoji"
    IMAGE = "image"


class ApiTokenType(enum.StrEnum):
    APP = "app"
    DATASET = "dataset"


class App(IdMixin, TimestampMixin, Base):
    __tablename__ = "apps"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[AppMode] = mapped_column(_enum(AppMode, "app_mode"))
    icon_type: Mapped[IconType] = mapped_column(
        _enum(IconType, "icon_type"), default=IconType.EMOJI
    )
    icon: Mapped[str] = mapped_column(String(255), default="🤖")
    icon_background: Mapped[str] = mapped_column(String(32), default="#FFEAD5")
    status: Mapped[AppStatus] = mapped_column(
        _enum(AppStatus, "app_status"), default=AppStatus.NORMAL
    )
    enable_site: Mapped[bool] = mapped_column(Boolean, default=True)
    enable_api: Mapped[bool] = mapped_column(Boolean, default=True)
    model_config_: Mapped[dict[str, Any]] = mapped_column("model_config", default=dict)
    max_active_requests: Mapped[int | None] = mapped_column(Integer, default=None)
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    updated_by: Mapped[str | None] = mapped_column(String(36), default=None)


class Site(IdMixin, TimestampMixin, Base):
    """The app's public web page (Dify's `sites`): one per app."""

    __tablename__ = "sites"

    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    icon_type: Mapped[str] = mapped_column(String(32), default="emoji")
    icon: Mapped[str] = mapped_column(String(255), default="🤖")
    icon_background: Mapped[str] = mapped_column(String(32), default="#FFEAD5")
    description: Mapped[str] = mapped_column(Text, default="")
    default_language: Mapped[str] = mapped_column(String(32), default="en-US")
    code: Mapped[str] = mapped_column(String(32), unique=True)
    copyright: Mapped[str | None] = mapped_column(String(255), default=None)
    privacy_policy: Mapped[str | None] = mapped_column(String(255), default=None)
    customize_domain: Mapped[str | None] = mapped_column(String(255), default=None)
    show_workflow_steps: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(32), default="normal")
    chat_color_theme: Mapped[str | None] = mapped_column(String(255), default=None)
    chat_color_theme_inverted: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    input_placeholder: Mapped[str | None] = mapped_column(String(255), default=None)
    custom_disclaimer: Mapped[str | None] = mapped_column(Text, default=None)
    use_icon_as_answer_icon: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Who may use it (Dify's web app access mode): `public` (anyone with the link) or
    # `private_all` (the members of the app's workspace, signed in).
    access_mode: Mapped[str] = mapped_column(String(32), default="public", server_default="public")


class InstalledApp(IdMixin, Base):
    """An app as it appears in a workspace's app list for end members (Dify's `installed_apps`)."""

    __tablename__ = "installed_apps"
    __table_args__ = (UniqueConstraint("tenant_id", "app_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    app_owner_tenant_id: Mapped[str] = mapped_column(String(36))
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column()


class ApiToken(IdMixin, Base):
    """A Service API key: only its SHA-256 and a display prefix are stored."""

    __tablename__ = "api_tokens"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str | None] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), index=True, default=None
    )
    type: Mapped[ApiTokenType] = mapped_column(_enum(ApiTokenType, "api_token_type"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str | None] = mapped_column(String(36), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column()
