"""Request bodies of the console API (responses are the services' snapshots)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from conduit.db.models import AppMode, IconType, Role

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LoginBody(Body):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    remember_me: bool = False


class RefreshBody(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class WorkspaceNameBody(Body):
    name: Name


class SwitchWorkspaceBody(Body):
    tenant_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AddMemberBody(Body):
    email: EmailStr
    role: Role = Field(description="admin, editor or normal")


class RoleBody(Body):
    role: Role


class AppCreateBody(Body):
    name: Name
    mode: AppMode
    description: Annotated[str, StringConstraints(max_length=4000)] = ""
    icon_type: IconType | None = None
    icon: Annotated[str, StringConstraints(max_length=255)] | None = None
    icon_background: Annotated[str, StringConstraints(max_length=32)] | None = None
    app_model_config: dict[str, Any] | None = Field(None, alias="model_config")


class AppUpdateBody(Body):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    icon_type: IconType | None = None
    icon: Annotated[str, StringConstraints(max_length=255)] | None = None
    icon_background: Annotated[str, StringConstraints(max_length=32)] | None = None
    enable_site: bool | None = None
    enable_api: bool | None = None
    max_active_requests: Annotated[int, Field(ge=0, le=100000)] | None = None
    app_model_config: dict[str, Any] | None = Field(None, alias="model_config")


class AppCopyBody(Body):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    icon_type: IconType | None = None
    icon: Annotated[str, StringConstraints(max_length=255)] | None = None
    icon_background: Annotated[str, StringConstraints(max_length=32)] | None = None


class AppNameBody(Body):
    name: Name
