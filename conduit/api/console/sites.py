"""An app's site settings (`/apps/{app_id}/site`): what its web page and `/v1/site` show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from conduit.api.deps import CurrentIdentity, DbSession
from conduit.api.files import FileLinks, Links
from conduit.db.models import Site
from conduit.services import sites
from conduit.services.sites import SiteFields

router = APIRouter(prefix="/apps", tags=["console: apps"])


def _snapshot(session: Session, site: Site, tenant_id: str, links: FileLinks) -> dict[str, Any]:
    icon = sites.icon_file_id(session, site, tenant_id=tenant_id)
    return sites.snapshot(site, icon_url=links.preview(icon) if icon else None)


@router.get("/{app_id}/site")
def get_site(
    app_id: str, identity: CurrentIdentity, session: DbSession, links: Links
) -> dict[str, Any]:
    """The app's site as the console shows it: its code (the web app's URL token) and texts."""
    site = sites.get_site(session, member=identity.membership, app_id=app_id)
    return {"data": _snapshot(session, site, identity.membership.tenant_id, links)}


@router.post("/{app_id}/site")
def update_site(
    app_id: str, body: SiteFields, identity: CurrentIdentity, session: DbSession, links: Links
) -> dict[str, Any]:
    """Dify's site fields, all optional: only those given change. The body is typed by
    `SiteFields` itself (FastAPI checks the types); lengths and formats are checked by the
    service, which names the field."""
    site = sites.update_site(session, member=identity.membership, app_id=app_id, fields=body)
    return {"data": _snapshot(session, site, identity.membership.tenant_id, links)}


@router.post("/{app_id}/site/access-token-reset")
def reset_site_access_token(
    app_id: str, identity: CurrentIdentity, session: DbSession, links: Links
) -> dict[str, Any]:
    site = sites.reset_access_token(session, member=identity.membership, app_id=app_id)
    return {"data": _snapshot(session, site, identity.membership.tenant_id, links)}
