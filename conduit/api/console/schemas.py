"""Request bodies of the console API (responses are the services' snapshots)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from conduit.db.models import AppMode, IconType, Role
from conduit.services.accounts import check_email

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


def _email(value: str) -> str:
    try:
        return check_email(value)
    except ValueError as error:  # a custom error: pydantic would prefix "Value error, "
        raise PydanticCustomError("email", str(error)) from None


# Every email a console body carries: the services' one rule, trimmed and lower-cased.
Email = Annotated[str, AfterValidator(_email)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class LoginBody(Body):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    remember_me: bool = False


class RefreshBody(Body):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class WorkspaceNameBody(Body):
    name: Name


class SwitchWorkspaceBody(Body):
    tenant_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AddMemberBody(Body):
    email: Email
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
