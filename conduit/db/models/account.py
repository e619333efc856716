"""Workspaces (tenants), accounts, memberships and console sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from conduit.db.models.base import Base, IdMixin, TimestampMixin


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR with a CHECK on both dialects, so adding a member is a small migration.
    return Enum(cls, name=name, native_enum=False, length=32, values_callable=_values)


def _values(cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in cls]


class TenantStatus(enum.StrEnum):
    NORMAL = "normal"
    ARCHIVE = "archive"


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    BANNED = "banned"


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    NORMAL = "normal"

    @property
    def rank(self) -> int:
        return {"owner": 3, "admin": 2, "editor": 1, "normal": 0}[self.value]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class Tenant(IdMixin, TimestampMixin, Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[TenantStatus] = mapped_column(
        _enum(TenantStatus, "tenant_status"), default=TenantStatus.NORMAL
    )


class Account(IdMixin, TimestampMixin, Base):
    __tablename__ = "accounts"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[AccountStatus] = mapped_column(
        _enum(AccountStatus, "account_status"), default=AccountStatus.ACTIVE
    )
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class Membership(IdMixin, TimestampMixin, Base):
    """An account's role in a workspace (Dify's `tenant_account_joins`)."""

    __tablename__ = "tenant_account_joins"
    __table_args__ = (UniqueConstraint("tenant_id", "account_id"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "member_role"))
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    invited_by: Mapped[str | None] = mapped_column(String(36), default=None)

    account: Mapped[Account] = relationship(lazy="joined")
    tenant: Mapped[Tenant] = relationship(lazy="joined")


class ConsoleSession(IdMixin, Base):
    """A login: its refresh token (hashed) and whether it was logged out."""

    __tablename__ = "console_sessions"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    refresh_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
