"""Accounts, workspaces (tenants) and memberships."""

from __future__ import annotations

import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from conduit.db.models import Account, AccountStatus, Membership, Role, Tenant, utcnow
from conduit.errors import (
    AccountAlreadyMember,
    AccountNotFound,
    Conflict,
    Forbidden,
    InvalidParam,
    MemberNotFound,
    Unauthorized,
)
from conduit.signals import send_after_commit, tenant_was_created, tenant_was_updated

_hasher = PasswordHasher()
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# The one email rule, the same shape as Dify's: a local part of letters, digits, dots and the
# RFC 5322 symbols, then dot-separated domain labels, the last one of 2+ characters. It checks the
# shape, not deliverability: email-validator (pydantic's EmailStr) refuses special-use domains
# such as .local and .test, which self-hosted installs use (quickstart's admin@conduit.local).
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[\w-]{2,}")
MAX_EMAIL = 254  # RFC 5321's limit on an address (the column holds 255)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    """The one email rule (console bodies through `schemas.Email`, the CLI through the services):
    the address trimmed and lower-cased, else ValueError saying what is wrong."""
    address = normalize_email(email)
    if len(address) > MAX_EMAIL:
        raise ValueError(f"must be at most {MAX_EMAIL} characters")
    if _EMAIL.fullmatch(address) is None:
        raise ValueError("must be an address like name@example.com")
    return address


def _email_param(email: str) -> str:
    try:
        return check_email(email)
    except ValueError as error:
        raise InvalidParam(f"email: {error}") from None


def get_account_by_email(session: Session, email: str) -> Account | None:
    return session.scalars(select(Account).where(Account.email == normalize_email(email))).first()


def create_account(
    session: Session, *, email: str, password: str, name: str | None = None
) -> Account:
    email = _email_param(email)
    if len(password) < MIN_PASSWORD:
        raise InvalidParam(f"password: must be at least {MIN_PASSWORD} characters")
    if get_account_by_email(session, email) is not None:
        raise Conflict(f"An account with email {email} already exists.")
    account = Account(
        email=email, name=name or email.split("@")[0], password_hash=hash_password(password)
    )
    session.add(account)
    session.flush()
    return account


def create_tenant(session: Session, *, name: str) -> Tenant:
    tenant = Tenant(name=name.strip())
    session.add(tenant)
    session.flush()
    send_after_commit(session, tenant_was_created, tenant)
    return tenant


def rename_tenant(session: Session, tenant: Tenant, *, name: str) -> Tenant:
    tenant.name = name.strip()
    send_after_commit(session, tenant_was_updated, tenant)
    return tenant


def join_tenant(
    session: Session, *, tenant: Tenant, account: Account, role: Role, invited_by: str | None = None
) -> Membership:
    has_current = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.account_id == account.id, Membership.current.is_(True))
    )
    membership = Membership(
        tenant_id=tenant.id,
        account_id=account.id,
        role=role,
        current=not has_current,
        invited_by=invited_by,
    )
    session.add(membership)
    session.flush()
    return membership


def create_admin(
    session: Session, *, email: str, password: str, workspace: str, name: str | None = None
) -> tuple[Account, Tenant, bool]:
    """Create an owner account with its own workspace; an existing account with the right
    password is reused (with its owned workspace). Returns (account, workspace, created)."""
    email = _email_param(email)
    existing = get_account_by_email(session, email)
    if existing is not None:
        if not verify_password(existing.password_hash, password):
            raise Conflict(f"An account with email {email} exists with another password.")
        owned = session.scalars(
            select(Membership)
            .where(Membership.account_id == existing.id, Membership.role == Role.OWNER)
            .order_by(Membership.created_at)
        ).first()
        if owned is not None:
            return existing, owned.tenant, False
        tenant = create_tenant(session, name=workspace)
        join_tenant(session, tenant=tenant, account=existing, role=Role.OWNER)
        return existing, tenant, True
    account = create_account(session, email=email, password=password, name=name)
    tenant = create_tenant(session, name=workspace)
    join_tenant(session, tenant=tenant, account=account, role=Role.OWNER)
    return account, tenant, True


_UNKNOWN_HASH: list[str] = []  # a hash to check an unknown email's password against


def authenticate(session: Session, *, email: str, password: str) -> Account:
    account = get_account_by_email(session, email)
    if account is None:
        # The same work as for a known email, so that the answer's time does not say which
        # emails have accounts.
        if not _UNKNOWN_HASH:
            _UNKNOWN_HASH.append(hash_password(secrets.token_urlsafe(16)))
        verify_password(_UNKNOWN_HASH[0], password)
        raise Unauthorized("Invalid email or password.")
    if not verify_password(account.password_hash, password):
        raise Unauthorized("Invalid email or password.")
    if account.status != AccountStatus.ACTIVE:
        raise Forbidden("The account is banned.")
    account.last_login_at = utcnow()
    return account


def current_membership(session: Session, account_id: str) -> Membership:
    memberships = list(
        session.scalars(
            select(Membership)
            .where(Membership.account_id == account_id)
            .order_by(Membership.current.desc(), Membership.created_at)
        )
    )
    if not memberships:
        raise Forbidden("The account belongs to no workspace.")
    return memberships[0]


def list_workspaces(session: Session, account_id: str) -> list[Membership]:
    return list(
        session.scalars(
            select(Membership)
            .where(Membership.account_id == account_id)
            .order_by(Membership.created_at)
        )
    )


def switch_workspace(session: Session, *, account_id: str, tenant_id: str) -> Membership:
    memberships = list_workspaces(session, account_id)
    target = next((m for m in memberships if m.tenant_id == tenant_id), None)
    if target is None:
        raise MemberNotFound("Workspace not found.")
    for membership in memberships:
        membership.current = membership is target
    return target


# --- members ------------------------------------------------------------------------------


def _member_statement(tenant_id: str) -> Select[Membership]:
    """The one scoping helper for memberships: only the given workspace's rows."""
    return select(Membership).where(Membership.tenant_id == tenant_id)


def list_members(session: Session, tenant_id: str) -> list[Membership]:
    return list(session.scalars(_member_statement(tenant_id).order_by(Membership.created_at)))


def get_member(session: Session, tenant_id: str, account_id: str) -> Membership:
    member = session.scalars(
        _member_statement(tenant_id).where(Membership.account_id == account_id)
    ).first()
    if member is None:
        raise MemberNotFound()
    return member


def _check_can_manage(actor: Membership) -> None:
    if not actor.role.at_least(Role.ADMIN):
        raise Forbidden("Only the workspace owner or an admin can manage members.")


def add_member(session: Session, *, actor: Membership, email: str, role: Role) -> Membership:
    _check_can_manage(actor)
    if role == Role.OWNER:
        raise InvalidParam("role: a workspace has one owner; choose admin, editor or normal")
    account = get_account_by_email(session, email)
    if account is None:
        raise AccountNotFound(f"No account with email {normalize_email(email)}.")
    exists = session.scalars(
        _member_statement(actor.tenant_id).where(Membership.account_id == account.id)
    ).first()
    if exists is not None:
        raise AccountAlreadyMember()
    return join_tenant(
        session, tenant=actor.tenant, account=account, role=role, invited_by=actor.account_id
    )


def update_member_role(
    session: Session, *, actor: Membership, account_id: str, role: Role
) -> Membership:
    _check_can_manage(actor)
    member = get_member(session, actor.tenant_id, account_id)
    if role == Role.OWNER or member.role == Role.OWNER:
        raise Forbidden("The owner's role cannot be given or taken away.")
    if member.account_id == actor.account_id:
        raise Forbidden("You cannot change your own role.")
    member.role = role
    return member


def remove_member(session: Session, *, actor: Membership, account_id: str) -> None:
    _check_can_manage(actor)
    member = get_member(session, actor.tenant_id, account_id)
    if member.role == Role.OWNER:
        raise Forbidden("The owner cannot be removed.")
    if member.account_id == actor.account_id:
        raise Forbidden("You cannot remove yourself.")
    was_current = member.current
    account_id = member.account_id
    session.delete(member)
    session.flush()
    if was_current:
        other = session.scalars(
            select(Membership)
            .where(Membership.account_id == account_id)
            .order_by(Membership.created_at)
        ).first()
        if other is not None:
            other.current = True
