"""The caller's workspaces and the current workspace's members."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from conduit.api.console.schemas import (
    AddMemberBody,
    RoleBody,
    SwitchWorkspaceBody,
    WorkspaceNameBody,
)
from conduit.api.deps import AppSettings, CurrentIdentity, DbSession
from conduit.db.models import Membership, Role
from conduit.errors import Forbidden
from conduit.services import accounts
from conduit.services.datasets import models

router = APIRouter(prefix="/workspaces", tags=["console: workspaces"])


def _workspace(membership: Membership) -> dict[str, Any]:
    tenant = membership.tenant
    return {
        "id": tenant.id,
        "name": tenant.name,
        "status": tenant.status.value,
        "role": membership.role.value,
        "current": membership.current,
        "created_at": int(tenant.created_at.timestamp()),
    }


def _member(membership: Membership) -> dict[str, Any]:
    account = membership.account
    return {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "role": membership.role.value,
        "status": account.status.value,
        "last_login_at": int(account.last_login_at.timestamp()) if account.last_login_at else None,
        "created_at": int(membership.created_at.timestamp()),
    }


@router.get("")
def list_workspaces(identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    items = [_workspace(m) for m in accounts.list_workspaces(session, identity.account.id)]
    return {"data": items, "total": len(items)}


@router.get("/current")
def current_workspace(identity: CurrentIdentity) -> dict[str, Any]:
    return {"data": _workspace(identity.membership)}


@router.post("/info")
def rename_workspace(
    body: WorkspaceNameBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    if not identity.membership.role.at_least(Role.ADMIN):
        raise Forbidden("Only the workspace owner or an admin can rename the workspace.")
    accounts.rename_tenant(session, identity.membership.tenant, name=body.name)
    return {"data": _workspace(identity.membership)}


@router.post("/switch")
def switch_workspace(
    body: SwitchWorkspaceBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    membership = accounts.switch_workspace(
        session, account_id=identity.account.id, tenant_id=body.tenant_id
    )
    return {"data": _workspace(membership)}


@router.get("/current/members")
def list_members(identity: CurrentIdentity, session: DbSession) -> dict[str, Any]:
    items = [_member(m) for m in accounts.list_members(session, identity.membership.tenant_id)]
    return {"data": items, "total": len(items)}


@router.post("/current/members", status_code=201)
def add_member(
    body: AddMemberBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    member = accounts.add_member(
        session, actor=identity.membership, email=body.email, role=body.role
    )
    return {"data": _member(member)}


@router.put("/current/members/{member_id}/update-role")
def update_member_role(
    member_id: str, body: RoleBody, identity: CurrentIdentity, session: DbSession
) -> dict[str, Any]:
    member = accounts.update_member_role(
        session, actor=identity.membership, account_id=member_id, role=body.role
    )
    return {"data": _member(member)}


@router.delete("/current/members/{member_id}", status_code=204)
def remove_member(member_id: str, identity: CurrentIdentity, session: DbSession) -> Response:
    accounts.remove_member(session, actor=identity.membership, account_id=member_id)
    return Response(status_code=204)


@router.get("/current/models/model-types/{model_type}")
def workspace_models(
    model_type: str, identity: CurrentIdentity, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """The workspace's models of one type (Dify's shape: providers, each with its models)."""
    return {
        "data": models.available_models(
            session, identity.membership.tenant_id, model_type, settings
        )
    }
