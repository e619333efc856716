"""End users of the Service API: get-or-create by (app, `user` string)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conduit.db.models import App, EndUser

ANONYMOUS = "DEFAULT-USER"


def get_or_create_end_user(session: Session, app: App, user: str | None) -> EndUser:
    """The caller's end user; a missing `user` is the shared anonymous one (Dify's rule)."""
    session_id = user or ANONYMOUS
    query = select(EndUser).where(
        EndUser.app_id == app.id, EndUser.type == "service-api", EndUser.session_id == session_id
    )
    found = session.scalars(query).first()
    if found is not None:
        return found
    end_user = EndUser(
        tenant_id=app.tenant_id,
        app_id=app.id,
        type="service-api",
        session_id=session_id,
        external_user_id=session_id,
        is_anonymous=user is None,
    )
    try:
        with session.begin_nested():
            session.add(end_user)
    except IntegrityError:
        # A concurrent first request of the same user created it: use theirs.
        existing = session.scalars(query).first()
        assert existing is not None
        return existing
    return end_user
